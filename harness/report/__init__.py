"""Reports: the JSON document (the result record of DESIGN.md), Markdown and HTML."""
