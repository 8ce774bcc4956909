#!/usr/bin/env python3
"""Parses a metrics exposition with PyPI's prometheus-client, an independent parser, and prints
what it read as JSON.

    parse_metrics.py FILE prometheus|openmetrics
        -> {"families": {NAME: {"type": TYPE, "samples": [{"name", "labels", "value"}]}}}
           or {"error": "..."} (exit 1) when the parser refuses the text.

prometheus-client names a counter's family without `_total` in both formats; the samples keep it.
"""
import json
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_prometheus


def main():
    path, fmt = sys.argv[1], sys.argv[2]
    with open(path, encoding="utf-8") as f:
        text = f.read()
    parse = parse_openmetrics if fmt == "openmetrics" else parse_prometheus
    try:
        families = {}
        for family in parse(text):
            families[family.name] = {
                "type": family.type,
                "help": family.documentation,
                "samples": [{"name": s.name, "labels": s.labels, "value": s.value} for s in family.samples],
            }
    except Exception as error:  # the parser refused the text: say why
        print(json.dumps({"error": f"{type(error).__name__}: {error}"}))
        sys.exit(1)
    print(json.dumps({"families": families}))


if __name__ == "__main__":
    main()
