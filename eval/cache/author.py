"""Writes the authored eval set (hand-written strings below) as JSONL in the `cache eval` format.

Each entry: (id, question, answer, [queries that must hit it], [(near-miss query, other id or None)]).
Split by domain: tune = hardware, bank, clinic; test = insurer, telecom, airline.
"""

import json
from pathlib import Path

D: dict[str, list[tuple[str, str, str, list[str], list[tuple[str, str | None]]]]] = {
    "hardware": [
        ("hw_return_receipt", "Can I return an item with a receipt?", "Yes, with a receipt you can return unused items within 30 days for a full refund.",
         ["I was wondering if I could bring something back, I've still got the receipt", "any chance I can return a drill if I kept the receipt",
          "can i return something i have the receipt", "i bought a saw and have the receet can i bring it back", "returning stuff with proof of purchase is that ok"],
         [("Can I return an item without a receipt?", "hw_return_noreceipt"), ("can i return paint i already opened", None), ("How do I return something I bought online?", None)]),
        ("hw_return_noreceipt", "Can I return an item without a receipt?", "Without a receipt we can offer store credit at the lowest recent price, with photo ID.",
         ["I lost my receipt, can I still bring this back?", "any chance of returning a hammer if I don't have the receipt anymore",
          "can i return something no receipt", "i threw away the receipt can i still return it", "what if i don't have a receipt for a return"],
         [("Can I return an item with a receipt?", "hw_return_receipt"), ("Can I get a copy of my receipt?", None), ("can i exchange without a receipt for a different size", None)]),
        ("hw_key_cutting", "Do you cut keys?", "Yes, our key counter cuts house and padlock keys while you wait, from 3 dollars.",
         ["I was wondering whether you can copy a house key", "any chance you do key duplication", "do you guys cut keys",
          "can i get a key copied there", "you do key cutting in the store"],
         [("Do you program car key fobs?", None), ("Do you sell key safes?", None), ("do you cut glass", "hw_glass_cut")]),
        ("hw_glass_cut", "Do you cut glass to size?", "Yes, we cut single-pane glass and acrylic sheets to size at the window desk.",
         ["can you cut a piece of glass for a picture frame", "I need a pane cut to measure, is that something you do",
          "do you cut glass to size", "can you guys cut glass for me", "i need glass cut for a window can you do that"],
         [("Do you cut keys?", "hw_key_cutting"), ("Do you cut wood to size?", None), ("do you install windows", None)]),
        ("hw_rent_tools", "Do you rent out tools?", "Yes, we rent power tools, carpet cleaners and ladders by the half day or full day.",
         ["I only need a tile saw for a weekend, can I hire one from you", "is it possible to borrow a floor sander for a day for a fee",
          "do you rent tools", "can i rent a pressure washer from you", "do you do tool hire"],
         [("Do you sell used tools?", None), ("can i return a rented tool late", None), ("Do you repair power tools?", None)]),
        ("hw_delivery", "Do you deliver lumber and heavy items?", "Yes, we deliver lumber and heavy items within 25 miles for a flat 49 dollar fee.",
         ["can you bring the timber to my house, I don't have a truck", "I'm wondering if you'd deliver a load of plywood",
          "do you deliver lumber", "can you deliver heavy stuff like cement bags", "do you guys do delivery for big orders"],
         [("Can I pick up lumber at the store?", None), ("do you deliver on sundays", None), ("Can I cancel a delivery?", None)]),
    ],
    "bank": [
        ("bk_to_savings", "How do I move money from checking to savings?", "In the app, choose Transfer, pick checking as From and savings as To, and enter the amount.",
         ["I want to put some money into my savings from my checking", "how would I go about moving cash over to savings",
          "how do i transfer from checking to savings", "move money to my savings account from checking", "i'd like to put money in savings how"],
         [("How do I move money from savings to checking?", "bk_from_savings"), ("how do i send money to someone else", None), ("What is the interest rate on savings?", None)]),
        ("bk_from_savings", "How do I move money from savings to checking?", "In the app, choose Transfer, pick savings as From and checking as To; up to six such transfers a month are free.",
         ["I need to take money out of my savings into checking", "how do I get cash back from savings into my everyday account",
          "transfer from savings to checking", "how do i move money out of savings", "pull money from my savings to checking"],
         [("How do I move money from checking to savings?", "bk_to_savings"), ("how do i close my savings account", None), ("Can I withdraw savings at an ATM?", None)]),
        ("bk_lost_card", "I lost my debit card, what should I do?", "Freeze the card at once in the app under Cards, then order a replacement; it arrives in 5 to 7 days.",
         ["I can't find my bank card anywhere", "I think I've lost my debit card, what do I do now",
          "i lost my debit card", "my card is lost what do i do", "lost my bank card need help"],
         [("I found my debit card, how do I unfreeze it?", None), ("My card was declined, why?", None), ("I lost my credit card pin", None)]),
        ("bk_open_account", "How do I open a checking account?", "You can open a checking account online in about 10 minutes with photo ID and your social security number.",
         ["I'd like to start a checking account with you", "what do I need to set up a new account",
          "how do i open an account", "can i open a checking account online", "i want to open a new checking account"],
         [("How do I close my checking account?", None), ("How do I open a business account?", None), ("can i open an account for my child", None)]),
        ("bk_wire_intl", "How do I send an international wire transfer?", "International wires are sent from online banking under Wires; the fee is 35 dollars and they arrive in 1 to 3 days.",
         ["I need to send money abroad to my family", "any chance I can wire money overseas",
          "how do i send a wire to another country", "international wire transfer how", "send money to mexico by wire"],
         [("How do I receive an international wire?", None), ("How do I send a domestic wire?", None), ("can i cancel a wire i already sent", None)]),
        ("bk_overdraft", "What is your overdraft fee?", "The overdraft fee is 30 dollars per item, at most three a day; there is no fee if you're overdrawn by under 50 dollars.",
         ["how much do you charge if I go below zero", "I was wondering what it costs when my account is overdrawn",
          "what's the overdraft fee", "how much is an over draft charge", "fee for going negative on my account"],
         [("How do I turn off overdraft protection?", None), ("Can you refund an overdraft fee?", None), ("what is the monthly account fee", None)]),
    ],
    "clinic": [
        ("cl_book", "How do I book an appointment?", "Book online through the patient portal or call us; same-week appointments are usually available.",
         ["I'd like to see a doctor, how do I get an appointment", "can I make an appointment with you",
          "how do i book an appointment", "i need to schedule a visit", "how can i get in to see the doctor"],
         [("How do I cancel an appointment?", "cl_cancel"), ("How do I change my appointment time?", "cl_reschedule"), ("how do i book a covid test", None)]),
        ("cl_cancel", "How do I cancel an appointment?", "Cancel through the patient portal or by phone at least 24 hours ahead to avoid the 25 dollar fee.",
         ["I can't make my appointment and need to call it off", "I'm wondering how I cancel my visit tomorrow",
          "how do i cancel my appointment", "i need to cancel a appointment", "cancel my doctor visit please how"],
         [("How do I change my appointment time?", "cl_reschedule"), ("How do I book an appointment?", "cl_book"), ("can i cancel my prescription refill", None)]),
        ("cl_reschedule", "How do I change my appointment time?", "Pick a new time in the patient portal under Appointments, or call us and we'll move it.",
         ["I need to move my appointment to a different day", "any chance I can push my visit to later in the week",
          "how do i reschedule", "can i change the time of my appointment", "move my appointment to next week"],
         [("How do I cancel an appointment?", "cl_cancel"), ("can i change my doctor", None), ("What time is my appointment?", None)]),
        ("cl_insurance", "Do you accept Blue Cross insurance?", "Yes, we are in network for Blue Cross Blue Shield PPO and HMO plans.",
         ["I have Blue Cross, will you take it", "is my blue cross plan accepted at your clinic",
          "do you take blue cross", "you accept blue cross blue shield", "is blue cross in network"],
         [("Do you accept Medicaid?", None), ("Do you accept Aetna insurance?", None), ("do you accept patients without insurance", None)]),
        ("cl_results", "How do I get my lab results?", "Lab results appear in the patient portal within 2 to 3 business days; the doctor calls about anything urgent.",
         ["when will I find out what my blood test showed", "I'm wondering where I can see my test results",
          "how do i get my lab results", "where are my blood work results", "how do i see my test results online"],
         [("How do I get my X-ray images?", None), ("how do i get a copy of my medical records", None), ("How do I book a blood test?", None)]),
        ("cl_refill", "How do I request a prescription refill?", "Request refills in the patient portal or ask your pharmacy to send us a request; allow 2 business days.",
         ["I'm running out of my medication, can I get more", "can you renew my prescription",
          "how do i get a refill", "i need a refill on my prescription", "request a prescription refill"],
         [("How do I transfer my prescription to another pharmacy?", None), ("can i cancel a refill", None), ("What pharmacy do you use?", None)]),
    ],
    "insurer": [
        ("in_claim_auto", "How do I file a car insurance claim?", "File a car claim in the app under Claims with photos of the damage, or call our 24-hour claims line.",
         ["I had a fender bender, how do I make a claim", "someone hit my car, what do I do to claim",
          "how do i file a claim for my car", "i need to make a auto claim", "car accident claim how do i start"],
         [("How do I file a home insurance claim?", "in_claim_home"), ("how do i check the status of my claim", None), ("Can I cancel a claim I filed?", None)]),
        ("in_claim_home", "How do I file a home insurance claim?", "File a home claim in the app with photos and a list of damaged items; an adjuster calls within 2 days.",
         ["a pipe burst in my kitchen, how do I claim for it", "my roof got damaged in the storm and I want to claim",
          "how do i file a home claim", "claim on my house insurance", "water damage in my house how do i claim"],
         [("How do I file a car insurance claim?", "in_claim_auto"), ("Does my policy cover flood damage?", None), ("how do i file a renters claim", None)]),
        ("in_add_driver", "How do I add a driver to my car policy?", "Add a driver in the app under Policy, Drivers, with their licence number; the new premium shows before you confirm.",
         ["my son just got his licence, can he go on my insurance", "I'd like to put my wife on my auto policy",
          "how do i add a driver", "add my daughter to my car insurance", "can i add someone to my policy as a driver"],
         [("How do I remove a driver from my car policy?", None), ("how do i add a car to my policy", None), ("Can someone else drive my car?", None)]),
        ("in_cancel_policy", "How do I cancel my policy?", "Call us to cancel; any unused premium is refunded within 10 business days.",
         ["I want to stop my insurance with you", "I'm switching insurers, how do I end my policy",
          "how do i cancel my policy", "cancel my insurance please", "i want to cancel my car insurance"],
         [("How do I change my policy?", None), ("How do I renew my policy?", None), ("can i cancel a claim", None)]),
        ("in_pay", "How do I pay my premium?", "Pay your premium in the app, by autopay from your bank, or by card over the phone.",
         ["what's the way to pay my insurance bill", "can I pay for my policy online",
          "how do i pay my premium", "pay my insurance bill", "how can i make a payment"],
         [("Why did my premium go up?", None), ("how do i get a refund of my premium", None), ("When is my premium due?", None)]),
        ("in_proof", "How do I get proof of insurance?", "Download your insurance card from the app under Documents, or we can email it to you.",
         ["I need my insurance card for the DMV", "the police asked for proof I'm insured, where do I get it",
          "how do i get proof of insurance", "where is my insurance card", "can you send me my insurance id card"],
         [("How do I get a copy of my full policy?", None), ("I lost my driver's licence", None), ("how do i get proof of no claims", None)]),
    ],
    "telecom": [
        ("tc_upgrade", "Am I eligible for a phone upgrade?", "You're eligible to upgrade once your device is paid off or after 24 months; check in the app under Devices.",
         ["can I get a new phone yet", "I was wondering whether I can upgrade my phone now",
          "am i eligible for an upgrade", "when can i upgrade my phone", "can i get a upgrade on my phone"],
         [("Can I downgrade my plan?", None), ("How do I upgrade my internet speed?", None), ("can i trade in my old phone", None)]),
        ("tc_roaming", "Does my plan work abroad?", "International roaming costs 10 dollars a day in 200 countries; turn it on in the app before you travel.",
         ["I'm going to Spain next week, will my phone work there", "can I use my phone overseas",
          "does my plan work in other countries", "international roaming how much", "will my phone work in canada"],
         [("How do I call an international number from home?", None), ("how do i turn off roaming", None), ("Does my plan include hotspot?", None)]),
        ("tc_outage", "Is there an outage in my area?", "Check outages on our status page or in the app; we post repair times there as soon as we know them.",
         ["my internet is down, is it just me", "is the network out near me right now",
          "is there an outage", "is your service down in my area", "my internet stopped working is there a outage"],
         [("How do I report a problem with my router?", None), ("Was there an outage last month, can I get credit?", None), ("is there planned maintenance next week", None)]),
        ("tc_port_in", "How do I keep my number when I switch to you?", "Give us your old carrier's account number and port-out PIN when you sign up; the number moves within a day.",
         ["I'm coming over from another carrier, can I bring my number", "can I transfer my phone number to you",
          "can i keep my number if i switch", "port my number to you", "how do i bring my old number over"],
         [("How do I transfer my number away to another carrier?", None), ("How do I change my phone number?", None), ("can i keep my phone if i switch", None)]),
        ("tc_bill_high", "Why is my bill higher this month?", "A higher bill usually comes from a promotion ending, roaming, or a partial month after a plan change; the app itemises it.",
         ["my bill went up and I don't know why", "why am I being charged more than usual",
          "why is my bill so high", "why did my bill go up", "my bill is more than last month why"],
         [("Why is my bill lower this month?", None), ("How do I pay my bill?", None), ("why is my internet so slow", None)]),
        ("tc_sim", "How do I get a replacement SIM card?", "Order a replacement SIM in the app for free delivery in 2 days, or pick one up in any store.",
         ["my SIM card stopped working, can I get a new one", "I need a new SIM for my phone",
          "how do i get a new sim card", "replacement sim card", "my sim is broken can you send another"],
         [("How do I activate an eSIM?", None), ("How do I unlock my phone?", None), ("can i get a second sim for my tablet", None)]),
    ],
    "airline": [
        ("al_bag_checked", "How much does a checked bag cost?", "The first checked bag is 35 dollars and the second 45 dollars on domestic flights.",
         ["what do you charge to check a suitcase", "I was wondering how much it is to put a bag in the hold",
          "how much is a checked bag", "cost of checking a bag", "how much to check luggage"],
         [("Is a carry-on bag free?", "al_bag_carryon"), ("How much does an overweight bag cost?", None), ("what do i do if my checked bag is lost", None)]),
        ("al_bag_carryon", "Is a carry-on bag free?", "Yes, one carry-on and one personal item are free on every fare except Basic.",
         ["can I bring a small suitcase on board without paying", "do I have to pay for hand luggage",
          "is carry on free", "do you charge for a carry on bag", "is cabin baggage included"],
         [("How much does a checked bag cost?", "al_bag_checked"), ("What size can my carry-on be?", None), ("can i bring two carry ons", None)]),
        ("al_change", "How do I change my flight?", "Change your flight under My Trips; there is no change fee on Main fares, you pay any fare difference.",
         ["I need to fly a day later than I booked", "can I move my flight to a different time",
          "how do i change my flight", "i want to change my flight date", "can i switch to an earlier flight"],
         [("How do I cancel my flight?", "al_cancel"), ("How do I change the name on my ticket?", None), ("can i change my seat", None)]),
        ("al_cancel", "How do I cancel my flight?", "Cancel under My Trips; refundable fares are refunded to your card, others become travel credit.",
         ["I can't travel anymore, how do I call off my trip", "I want to get rid of my booking",
          "how do i cancel my flight", "cancel my ticket please", "i need to cancel a flight"],
         [("How do I change my flight?", "al_change"), ("My flight was cancelled, what now?", None), ("can i cancel my seat selection", None)]),
        ("al_checkin", "When does online check-in open?", "Online check-in opens 24 hours before departure and closes 45 minutes before.",
         ["how early can I check in on the website", "I'm wondering when I'm able to check in online",
          "when does check in open", "how soon can i check in online", "online check in how early"],
         [("When does the check-in desk at the airport open?", None), ("When does boarding start?", None), ("can i check in for my return flight now", None)]),
        ("al_pets", "Can I bring my pet in the cabin?", "Small cats and dogs can fly in the cabin in a carrier under the seat for 125 dollars each way.",
         ["can my dog fly with me on the plane", "is it possible to take my cat on board",
          "can i bring my pet on the plane", "can my dog come in the cabin", "pets in cabin allowed"],
         [("Can I ship my pet in cargo?", None), ("Can I bring my service dog?", None), ("can i bring a pet on an international flight", None)]),
    ],
}
OFF = {"hardware": ["do you sell lottery tickets", "What's the weather tomorrow?"], "bank": ["do you sell gift cards", "Can you tell me a joke?"],
       "clinic": ["do you do home visits", "Is there parking at the clinic on Sundays?"], "insurer": ["do you insure boats", "What's the capital of France?"],
       "telecom": ["do you sell tvs", "Can I pay my bill in cash at a store?"], "airline": ["do you fly to hawaii", "Can I bring a surfboard?"]}
SPLIT = {"tune": ["hardware", "bank", "clinic"], "test": ["insurer", "telecom", "airline"]}


def main() -> None:
    out = Path(__file__).parent
    for part, domains in SPLIT.items():
        ents, qs = [], []
        for d in domains:
            for eid, q, a, hits, misses in D[d]:
                ents.append({"id": eid, "question": q, "answer": a, "tenant": "acme"})
                qs += [{"query": h, "expect": eid} for h in hits]
                qs += [{"query": m, "expect": o} for m, o in misses]
            qs += [{"query": m, "expect": None} for m in OFF[d]]
        (out / f"{part}_entries.jsonl").write_text("".join(json.dumps(e) + "\n" for e in ents))
        (out / f"{part}_queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in qs))
        print(part, len(ents), "entries", len(qs), "queries")


if __name__ == "__main__":
    main()
