"""Celery task names, defined once: the agent and the MCP server send tasks by these names, the
workers in tasks/ register under them (producers never import task code)."""

TASK_SUMMARIZE = "callcenter.summarize"
TASK_ANALYZE = "callcenter.analyze_document"
TASK_COMPARE = "callcenter.compare_documents"
