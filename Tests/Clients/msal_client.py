#!/usr/bin/env python3
"""Microsoft's own MSAL for Python, unmodified, against the simulator over HTTPS.

Usage: msal_client.py BASE_URL TENANT CLIENT_ID SECRET CA_FILE
Prints the token's claims (never the token) as JSON; exits 1 when no token was issued."""
import base64, json, sys
import msal

base, tenant, client_id, secret, ca_file = sys.argv[1:6]
app = msal.ConfidentialClientApplication(
    client_id,
    client_credential=secret,
    authority=f"{base}/{tenant}",
    instance_discovery=False,  # the authority is not a Microsoft host
    verify=ca_file,
)
result = app.acquire_token_for_client(scopes=["https://api.securitycenter.microsoft.com/.default"])
if "access_token" not in result:
    print(json.dumps({"error": result.get("error"), "error_description": result.get("error_description"),
                      "error_codes": result.get("error_codes")}))
    sys.exit(1)
payload = result["access_token"].split(".")[1]
claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
print(json.dumps({"token_type": result["token_type"], "expires_in": result["expires_in"], "claims": claims}))
