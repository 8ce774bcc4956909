#!/usr/bin/env python3
"""A plain `requests` script following Microsoft's documented samples (get token, then
GET /api/alerts with $filter/$top/$skip), unmodified except for the base URLs.

Usage: requests_client.py BASE_URL TENANT CLIENT_ID SECRET CA_FILE SINCE_ISO
Prints a JSON summary of what it fetched."""
import json, sys
import requests

base, tenant, app_id, app_secret, ca_file, since = sys.argv[1:7]

# As in "Hello World" / "Create an app to access MDE without a user" (v1 endpoint, resource).
url = f"{base}/{tenant}/oauth2/token"
resource_app_id_uri = "https://api.securitycenter.microsoft.com"
body = {"resource": resource_app_id_uri, "client_id": app_id, "client_secret": app_secret, "grant_type": "client_credentials"}
response = requests.post(url, data=body, verify=ca_file, timeout=30)
response.raise_for_status()
aad_token = response.json()["access_token"]

headers = {"Content-Type": "application/json", "Accept": "application/json", "Authorization": "Bearer " + aad_token}
pages, ids, skip, top = 0, [], 0, 5
while True:
    params = {"$filter": f"lastUpdateTime ge {since}", "$top": top, "$skip": skip}
    reply = requests.get(f"{base}/api/alerts", headers=headers, params=params, verify=ca_file, timeout=30)
    reply.raise_for_status()
    page = reply.json()["value"]
    pages += 1
    ids += [alert["id"] for alert in page]
    if len(page) < top:
        break
    skip += top
print(json.dumps({"pages": pages, "alerts": len(ids), "unique": len(set(ids)),
                  "encoding": reply.headers.get("Content-Encoding"), "odata_version": reply.headers.get("OData-Version")}))
