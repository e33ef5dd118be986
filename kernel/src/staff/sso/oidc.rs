//! The OpenID Connect relying party, through the `openidconnect` crate: discovery, the
//! authorization URL, the code exchange and the ID token's verification. HTTP goes
//! through the kernel's own reqwest (rustls with ring) by the crate's async client hook,
//! so no second HTTP or TLS stack is built.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreAuthenticationFlow, CoreErrorResponseType,
    CoreGenderClaim, CoreJsonWebKey, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm,
    CoreProviderMetadata, CoreRevocableToken, CoreRevocationErrorResponse,
    CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::{
    AdditionalClaims, AsyncHttpClient, AuthorizationCode, Client, ClientId, ClientSecret,
    CsrfToken, EmptyExtraTokenFields, EndpointMaybeSet, EndpointNotSet, EndpointSet, HttpRequest,
    HttpResponse, IdTokenFields, IssuerUrl, Nonce, PkceCodeChallenge, PkceCodeVerifier,
    RedirectUrl, Scope, StandardErrorResponse, StandardTokenResponse,
};
use serde::{Deserialize, Serialize};

use super::Provider;
use crate::error::{Error, Result};

/// How long a request to the provider may take.
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(10);
/// The most the kernel reads of a provider's answer (discovery, JWKS, token).
const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// The ID token's claims beyond the standard ones (the groups claim is among them, under
/// the name the owner set).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(transparent)]
pub struct OtherClaims(pub serde_json::Map<String, serde_json::Value>);

impl AdditionalClaims for OtherClaims {}

type IdFields = IdTokenFields<
    OtherClaims,
    EmptyExtraTokenFields,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;
type TokenResponse = StandardTokenResponse<IdFields, CoreTokenType>;
/// A client made from discovery: authorization endpoint set, token endpoint maybe.
type OidcClient = Client<
    OtherClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    TokenResponse,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// ID tokens signed with anything else are refused, whatever the provider advertises:
/// `none` is no signature, and HMAC would let whoever knows the client secret sign.
const ACCEPTED_ALGORITHMS: [CoreJwsSigningAlgorithm; 9] = [
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512,
    CoreJwsSigningAlgorithm::RsaSsaPssSha256,
    CoreJwsSigningAlgorithm::RsaSsaPssSha384,
    CoreJwsSigningAlgorithm::RsaSsaPssSha512,
    CoreJwsSigningAlgorithm::EcdsaP256Sha256,
    CoreJwsSigningAlgorithm::EcdsaP384Sha384,
    CoreJwsSigningAlgorithm::EdDsa,
];

/// A failure talking to the provider over HTTP.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("request to the provider failed: {0}")]
    Request(#[from] reqwest::Error),
    #[error("the provider's answer is larger than {MAX_ANSWER_BYTES} bytes")]
    TooLarge,
    #[error("building the provider's answer: {0}")]
    Http(#[from] openidconnect::http::Error),
}

/// The HTTP client for providers: no redirects followed (the OAuth 2.0 endpoints answer
/// directly; following one could send the code or secret elsewhere), a timeout.
pub fn http_client() -> anyhow::Result<reqwest::Client> {
    // The kernel's reqwest is rustls without a built-in provider: ring becomes the
    // process's provider unless one was chosen already (as for S3 media).
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        #[allow(deprecated)]
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    Ok(reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(PROVIDER_TIMEOUT)
        .build()?)
}

/// The kernel's reqwest as the crate's HTTP client (a type of its own rather than a
/// closure, so the futures are `Send` for every lifetime the crate asks of them).
struct ProviderHttp(reqwest::Client);

impl<'c> AsyncHttpClient<'c> for ProviderHttp {
    type Error = HttpError;
    type Future =
        Pin<Box<dyn Future<Output = std::result::Result<HttpResponse, HttpError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(send(&self.0, request))
    }
}

/// Sends one of the crate's requests with `client`, reading at most [`MAX_ANSWER_BYTES`].
async fn send(
    client: &reqwest::Client,
    request: HttpRequest,
) -> std::result::Result<HttpResponse, HttpError> {
    let (parts, body) = request.into_parts();
    let mut response = client
        .request(parts.method, parts.uri.to_string())
        .headers(parts.headers)
        .body(body)
        .send()
        .await?;
    let mut answer = openidconnect::http::Response::builder().status(response.status());
    for (name, value) in response.headers() {
        answer = answer.header(name, value);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(HttpError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(answer.body(body)?)
}

/// The provider, read from its discovery document (and its JWKS), as a client of it.
pub struct RelyingParty {
    client: OidcClient,
    http: ProviderHttp,
}

/// What a sign-in sends the browser to, and what checks the answer.
pub struct Authorization {
    pub url: String,
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
}

/// Who the provider says signed in, from an ID token that checked out.
#[derive(Debug, Clone)]
pub struct VerifiedIdentity {
    pub issuer: String,
    pub subject: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub name: Option<String>,
    pub groups: Vec<String>,
}

/// Why the provider's answer to a code did not give an identity.
#[derive(Debug)]
pub enum ExchangeFailure {
    /// The token endpoint refused the code (or could not be reached).
    CodeRefused(String),
    /// An ID token came, and did not verify (signature, issuer, audience, expiry, nonce).
    IdTokenInvalid(String),
}

fn unavailable(what: &str, err: impl std::fmt::Display) -> Error {
    tracing::warn!(error = %err, "single sign-on: {what}");
    Error::Unavailable(format!(
        "the sign-in provider could not be reached ({what}): try again later"
    ))
}

impl RelyingParty {
    /// Reads the provider's discovery document and keys; 503 when it cannot.
    pub async fn discover(provider: &Provider, redirect_url: &str) -> Result<RelyingParty> {
        let http = ProviderHttp(http_client().map_err(Error::Internal)?);
        let issuer = IssuerUrl::new(provider.settings.issuer_url.clone())
            .map_err(|err| unavailable("issuer URL", err))?;
        let metadata = CoreProviderMetadata::discover_async(issuer, &http)
            .await
            .map_err(|err| unavailable("discovery", err))?;
        let redirect = RedirectUrl::new(redirect_url.to_owned())
            .map_err(|err| Error::Internal(anyhow::anyhow!("the SSO redirect URL: {err}")))?;
        let client = OidcClient::from_provider_metadata(
            metadata,
            ClientId::new(provider.settings.client_id.clone()),
            Some(ClientSecret::new(provider.client_secret.clone())),
        )
        .set_redirect_uri(redirect);
        Ok(RelyingParty { client, http })
    }

    /// The authorization URL of a new sign-in: code flow, PKCE S256, a fresh state and
    /// nonce; scopes `openid email profile`.
    pub fn authorize(&self) -> Authorization {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, state, nonce) = self
            .client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_scope(Scope::new("email".to_owned()))
            .add_scope(Scope::new("profile".to_owned()))
            .set_pkce_challenge(challenge)
            .url();
        Authorization {
            url: url.to_string(),
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            pkce_verifier: verifier.secret().clone(),
        }
    }

    /// Trades `code` for tokens and verifies the ID token against the provider's keys,
    /// the client id, the issuer, the kernel's clock and `nonce`.
    pub async fn exchange(
        &self,
        code: &str,
        pkce_verifier: &str,
        nonce: &str,
        groups_claim: &str,
        now: impl Fn() -> chrono::DateTime<chrono::Utc> + Send + Sync + 'static,
    ) -> Result<std::result::Result<VerifiedIdentity, ExchangeFailure>> {
        let request = match self
            .client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
        {
            Ok(request) => request,
            Err(err) => return Err(unavailable("no token endpoint", err)),
        };
        let tokens = match request
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_owned()))
            .request_async(&self.http)
            .await
        {
            Ok(tokens) => tokens,
            Err(err) => return Ok(Err(ExchangeFailure::CodeRefused(describe(&err)))),
        };
        let Some(id_token) = openidconnect::TokenResponse::id_token(&tokens) else {
            return Ok(Err(ExchangeFailure::IdTokenInvalid(
                "the token answer has no ID token".to_owned(),
            )));
        };
        let verifier = self
            .client
            .id_token_verifier()
            .set_allowed_algs(ACCEPTED_ALGORITHMS)
            .set_time_fn(now);
        let claims = match id_token.claims(&verifier, &Nonce::new(nonce.to_owned())) {
            Ok(claims) => claims,
            Err(err) => return Ok(Err(ExchangeFailure::IdTokenInvalid(err.to_string()))),
        };
        Ok(Ok(VerifiedIdentity {
            issuer: claims.issuer().to_string(),
            subject: claims.subject().to_string(),
            email: claims.email().map(|email| email.to_string()),
            email_verified: claims.email_verified() == Some(true)
                || domain_owner_verified(claims.additional_claims()),
            name: claims
                .name()
                .and_then(|name| name.get(None))
                .map(|name| name.to_string()),
            groups: groups_of(claims.additional_claims(), groups_claim),
        }))
    }
}

/// Whether Microsoft Entra ID vouches for the email: it sends no `email_verified`, but
/// its optional claim `xms_edov` ("email domain owner verified") says the tenant owns
/// the email's domain.
fn domain_owner_verified(claims: &OtherClaims) -> bool {
    match claims.0.get("xms_edov") {
        Some(serde_json::Value::Bool(verified)) => *verified,
        Some(serde_json::Value::String(text)) => text == "true" || text == "1",
        _ => false,
    }
}

/// The groups in claim `name`: a list of strings or one string; anything else is none.
fn groups_of(claims: &OtherClaims, name: &str) -> Vec<String> {
    match claims.0.get(name) {
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .filter_map(|item| item.as_str().map(str::to_owned))
            .collect(),
        Some(serde_json::Value::String(one)) => vec![one.clone()],
        _ => Vec::new(),
    }
}

/// A token request's failure, for the audit log and the server log: the provider's error
/// code when it answered one, else the error and its sources.
fn describe(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_a_list_or_one_string() {
        let claims: OtherClaims =
            serde_json::from_value(serde_json::json!({"groups": ["a", 1, "b"], "team": "c"}))
                .unwrap();
        assert_eq!(groups_of(&claims, "groups"), ["a", "b"]);
        assert_eq!(groups_of(&claims, "team"), ["c"]);
        assert!(groups_of(&claims, "roles").is_empty());
    }

    #[test]
    fn entra_ids_domain_owner_claim_vouches_for_the_email() {
        let claims = |value: serde_json::Value| -> OtherClaims {
            serde_json::from_value(serde_json::json!({ "xms_edov": value })).unwrap()
        };
        assert!(domain_owner_verified(&claims(serde_json::json!(true))));
        assert!(domain_owner_verified(&claims(serde_json::json!("1"))));
        assert!(!domain_owner_verified(&claims(serde_json::json!(false))));
        assert!(!domain_owner_verified(&OtherClaims::default()));
    }
}
