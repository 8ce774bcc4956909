#!/usr/bin/env python3
"""Reads syslog messages, one per line, and prints each as JSON parsed by independent parsers:
PyPI's syslog-rfc5424-parser for the RFC 5424 frame, and pycef for a CEF message text.

    parse_syslog.py FILE   ->  {"syslog": {...} | null, "cef": {...} | null, "error": "..."} per line
"""
import json
import sys

import pycef
from syslog_rfc5424_parser import SyslogMessage


def parse(line):
    result = {"syslog": None, "cef": None}
    try:
        message = SyslogMessage.parse(line)
        result["syslog"] = message.as_dict()
        text = message.msg
    except Exception as error:  # not RFC 5424: report it, still try CEF on the whole line
        result["error"] = f"{type(error).__name__}: {error}"
        text = line
    if "CEF:" in text:
        result["cef"] = pycef.parse(text)
    return result


def main():
    with open(sys.argv[1], encoding="utf-8") as lines:
        for line in lines:
            print(json.dumps(parse(line.rstrip("\n")), default=str))


if __name__ == "__main__":
    main()
