#!/usr/bin/env python3
"""The usual script: what Microsoft's documented Python samples for the Defender for Endpoint
API lead to ("Get access token" with the v1 endpoint, then GET /api/alerts with a $filter),
with $top/$skip paging added and each alert written to a JSON Lines file (json.dumps, no
fsync). It keeps no state: it is the peer the daemon is measured against.

Usage: naive_poller.py LOGIN_URL API_URL TENANT CLIENT_ID SECRET_FILE SINCE OUT_FILE [PAGE_SIZE]
(SINCE: an OData datetime such as 2026-11-25T00:00:00Z)"""
import json
import sys

import requests

login, api, tenant, client_id, secret_file, since, out = sys.argv[1:8]
top = int(sys.argv[8]) if len(sys.argv) > 8 else 1000
with open(secret_file) as f:
    secret = f.read().strip()

# Token: client credentials on the v1 endpoint, as in Microsoft's sample.
response = requests.post(f"{login}/{tenant}/oauth2/token", data={
    "resource": "https://api.securitycenter.microsoft.com",
    "client_id": client_id,
    "client_secret": secret,
    "grant_type": "client_credentials",
})
response.raise_for_status()
token = response.json()["access_token"]

session = requests.Session()
session.headers.update({"Authorization": "Bearer " + token, "Accept": "application/json"})
skip = 0
calls = 0
with open(out, "w") as sink:
    while True:
        url = f"{api}/api/alerts?$filter=lastUpdateTime ge {since}&$top={top}&$skip={skip}&$expand=evidence"
        response = session.get(url)
        response.raise_for_status()
        calls += 1
        alerts = response.json()["value"]
        for alert in alerts:
            sink.write(json.dumps(alert) + "\n")
        if len(alerts) < top:
            break
        skip += top
print(f"{calls} calls", file=sys.stderr)
