"""Turning JSON/CSV records into documents (shared by the JSON and CSV sources)."""

from __future__ import annotations

from typing import Any

from pipelines.operators.documents import make_document


def records_to_documents(records: list[Any], text_field: str, id_field: str | None, origin: str) -> list[dict[str, Any]]:
    """One document per record; the other fields become metadata. Errors name the record by position."""
    docs = []
    for index, record in enumerate(records):
        if isinstance(record, str):
            docs.append(make_document(f"{origin}#{index}", record, source=origin, row=index))
            continue
        if not isinstance(record, dict):
            raise ValueError(f"record {index} of {origin} is a {type(record).__name__}, expected an object or a string")
        if text_field not in record or record[text_field] in (None, ""):
            raise ValueError(f"record {index} of {origin} has no {text_field!r} field (set text_field)")
        doc_id = record.get(id_field) if id_field else None
        metadata = {k: v for k, v in record.items() if k != text_field}
        docs.append(
            make_document(doc_id if doc_id is not None else f"{origin}#{index}", str(record[text_field]),
                          source=origin, row=index, **metadata)
        )
    return docs
