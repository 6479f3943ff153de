"""Reports: the JSON document (the result record, docs/record.md), Markdown and HTML."""
