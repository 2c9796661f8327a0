"""The simulated phone call: scripted caller, telephone line model, real-time audio I/O."""
