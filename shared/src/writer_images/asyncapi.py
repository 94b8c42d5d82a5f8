"""The AsyncAPI description of every event, generated from the contracts (never written by hand).

`python -m writer_images.asyncapi > docs/asyncapi.yaml`; a test fails when the file is stale.
"""

from __future__ import annotations

import sys
from typing import Any

import yaml

from writer_images.events import MAX_EVENT_BYTES, Envelope, all_contracts
from writer_images.topics import dlq_topic

PRODUCERS = {
    "site.changed": "images-api",
    "image.generation.requested": "images-api",
    "content.publish.requested": "images-api",
    "image.generation.progress": "generator",
    "image.generated": "generator",
    "image.generation.failed": "generator",
    "ai.function.called": "generator",
    "content.published": "publisher",
    "content.publish.failed": "publisher",
    "wordpress.post.changed": "sync",
}


def document() -> dict[str, Any]:
    channels: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    schemas: dict[str, Any] = {"Envelope": Envelope.model_json_schema()}
    for contract in sorted(all_contracts(), key=lambda c: c.topic):
        name = f"{contract.model.__name__}V{contract.version}"
        schemas[name] = contract.model.model_json_schema(ref_template="#/components/schemas/{model}")
        for sub_name, sub_schema in schemas[name].pop("$defs", {}).items():
            schemas.setdefault(sub_name, sub_schema)
        messages[name] = {
            "name": contract.event_type,
            "title": f"{contract.event_type} v{contract.version}",
            "summary": f"Produced by {PRODUCERS.get(contract.event_type, '?')}. Kafka key: the aggregate id.",
            "contentType": "application/json",
            "payload": {
                "allOf": [
                    {"$ref": "#/components/schemas/Envelope"},
                    {
                        "properties": {
                            "type": {"const": contract.event_type},
                            "version": {"const": contract.version},
                            "payload": {"$ref": f"#/components/schemas/{name}"},
                        }
                    },
                ]
            },
        }
        channels[contract.topic] = {
            "address": contract.topic,
            "messages": {name: {"$ref": f"#/components/messages/{name}"}},
        }
        channels[dlq_topic(contract.topic)] = {
            "address": dlq_topic(contract.topic),
            "description": "Dead letters: {reason, attempts, group_id, topic, partition, offset, key, failed_at, "
            "original_encoding, original}.",
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Writer Images events",
            "version": "1.0.0",
            "description": "Every event is an Envelope whose payload is the message's model. "
            "Delivery is at least once; consumers dedupe by event_id. "
            f"An envelope is at most {MAX_EVENT_BYTES:,} bytes (`events.MAX_EVENT_BYTES`).",
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "components": {"messages": messages, "schemas": schemas},
    }


def render() -> str:
    rendered: str = yaml.safe_dump(document(), sort_keys=False, allow_unicode=True, width=110)
    return rendered


if __name__ == "__main__":
    sys.stdout.write(render())
