/// Every AADSTS code the simulated Entra ID sends, and nothing else: an error body takes one of
/// these (or none), so a code cannot be sent without being listed here. Each has a public source
/// for its meaning, given with the client's reading of it in Tests/Fixtures/README.md (a test
/// checks that every case is there). Unless said otherwise the source is Microsoft's reference,
/// https://learn.microsoft.com/entra/identity-platform/reference-error-codes (its names are
/// given after each code).
public enum EntraErrorCode: Int, CaseIterable, Sendable {
    /// InvalidJwtToken: a client assertion that is malformed, lacks a claim, or has an
    /// unexpected issuer.
    case invalidJWT = 50027
    /// SubjectMismatchesIssuer: a client assertion whose `sub` is not its `iss`.
    case subjectMismatchesIssuer = 50048
    /// UserStrongAuthClientAuthNRequired: multi-factor authentication is now required.
    case strongAuthRequired = 50076
    /// UserStrongAuthEnrollmentRequired: the user must register for multi-factor authentication.
    case strongAuthEnrollmentRequired = 50079
    /// ExternalSecurityChallenge: an external security challenge was not satisfied.
    case externalSecurityChallenge = 50158
    /// FreshTokenNeeded: the grant was revoked (an administrator, a password reset).
    case freshTokenNeeded = 50173
    /// BlockedByConditionalAccess: a Conditional Access policy does not allow token issuance.
    case blockedByConditionalAccess = 53003
    /// DelegationDoesNotExist: nobody consented to the delegated permission.
    case delegationDoesNotExist = 65001
    /// UnsupportedGrantType.
    case unsupportedGrantType = 70003
    /// InvalidScope.
    case invalidScope = 70011
    /// AuthorizationPending: the device code flow's person has not signed in yet.
    case authorizationPending = 70016
    /// BadVerificationCode.
    case badVerificationCode = 70018
    /// CodeExpired: the device code expired.
    case codeExpired = 70019
    /// InvalidTenantName: no such tenant in this cloud.
    case tenantNotFound = 90002
    /// "The request body must contain the following parameter".
    case missingParameter = 900144
    /// BadResourceRequestInvalidRequest: the endpoint accepts only POST.
    case methodNotAllowed = 900561
    /// "The 'resource' request parameter isn't supported" (v2 endpoint).
    case resourceParameterNotSupported = 901002
    /// InvalidRequest: "Request is malformed or invalid" (an unknown refresh token).
    case malformedRequest = 9002313
    /// InvalidResourceServicePrincipalNotFound: the API is not in the tenant.
    case resourceNotFound = 500011
    /// UnauthorizedClient_DoesNotMatchRequest: no such app in the tenant.
    case applicationNotFound = 700016
    /// A client assertion whose audience is not the token endpoint: "Client assertion audience
    /// claim does not match Realm issuer" (the Azure SDK for Java's troubleshooting guide,
    /// https://learn.microsoft.com/azure/developer/java/sdk/troubleshooting-authentication-service-principal ;
    /// Microsoft's reference names the same number InvalidResourcelessScope).
    case assertionAudienceMismatch = 700023
    /// A client assertion outside its valid time range: `SignedAssertionInvalidTimeRange` in
    /// Microsoft.Identity.Web (src/Microsoft.Identity.Web.TokenAcquisition/Constants.cs of
    /// https://github.com/AzureAD/microsoft-identity-web).
    case assertionTimeRange = 700024
    /// "Client assertion failed signature validation."
    case assertionSignature = 700027
    /// ExpiredOrRevokedGrantInactiveToken: the refresh token went unused too long.
    case refreshTokenInactive = 700082
    /// "Invalid client secret is provided."
    case invalidClientSecret = 7000215
    /// "The request body must contain the following parameter: 'client_assertion' or 'client_secret'."
    case credentialMissing = 7000218
}
