#!/usr/bin/env python3
"""Microsoft's own MSAL for Python, unmodified, signing a user in with the device code flow
against the simulator over HTTPS, then redeeming the refresh token it got.

Usage: msal_device_flow.py BASE_URL TENANT CLIENT_ID CA_FILE
Prints the flow's user_code on a line `user_code CODE` (a test approves it through the
simulator's control API), then the access token's claims (never a token) as JSON; exits 1 when
no token was issued."""
import base64, json, sys
import msal

base, tenant, client_id, ca_file = sys.argv[1:5]
app = msal.PublicClientApplication(
    client_id,
    authority=f"{base}/{tenant}",
    instance_discovery=False,  # the authority is not a Microsoft host
    verify=ca_file,
)
scopes = ["https://api.securitycenter.microsoft.com/Alert.Read"]
flow = app.initiate_device_flow(scopes=scopes)
if "user_code" not in flow:
    print(json.dumps({"error": flow.get("error"), "error_description": flow.get("error_description")}))
    sys.exit(1)
print(f"user_code {flow['user_code']}", flush=True)
result = app.acquire_token_by_device_flow(flow)  # polls /token, honouring `interval`
if "access_token" not in result:
    print(json.dumps({"error": result.get("error"), "error_codes": result.get("error_codes")}))
    sys.exit(1)
# The refresh token, as MSAL keeps it: a silent request for a new token after forcing a refresh.
account = app.get_accounts()[0]
renewed = app.acquire_token_silent(scopes, account=account, force_refresh=True)
payload = result["access_token"].split(".")[1]
claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
print(json.dumps({"claims": claims, "scope": result.get("scope"), "renewed": bool(renewed and "access_token" in renewed),
                  "username": account.get("username")}))
