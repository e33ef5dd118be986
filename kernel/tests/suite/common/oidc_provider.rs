//! A small OpenID Connect provider for the single sign-on tests: discovery, JWKS and the
//! token endpoint over HTTP (the kernel reads them as it reads a real provider), and the
//! authorization endpoint as a call ([`MockOidc::authorize`]: the staff member at the
//! provider's sign-in page, in their browser). ID tokens are RS256, signed with a key
//! checked in beside this file; times come from the kernel's clock. A test can have the
//! next ID token come out wrong ([`Tweak`]) and add or remove accounts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use olivine::time::Clock;
use serde_json::{Value, json};

/// The provider's signing key (RSA 2048, PKCS#1, made for these tests only).
const SIGNING_KEY_PEM: &str = include_str!("test_only_oidc_signing_key.pem");
/// Another RSA key: an ID token signed with it has a signature the JWKS does not verify.
const FORGED_KEY_PEM: &str = include_str!("test_only_oidc_forged_key.pem");
const KEY_ID: &str = "olivine-test-key";
pub const CLIENT_ID: &str = "olivine-staff";
pub const CLIENT_SECRET: &str = "the-client-secret-of-the-test-provider";

/// An account at the provider.
#[derive(Debug, Clone)]
pub struct Account {
    pub subject: String,
    pub email: String,
    pub email_verified: bool,
    pub name: String,
    pub groups: Vec<String>,
    /// More claims for its ID tokens (e.g. Entra ID's `xms_edov`).
    pub extra_claims: serde_json::Map<String, Value>,
}

impl Account {
    pub fn new(subject: &str, email: &str, groups: &[&str]) -> Account {
        Account {
            subject: subject.to_owned(),
            email: email.to_owned(),
            email_verified: true,
            name: format!("Staff {subject}"),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            extra_claims: serde_json::Map::new(),
        }
    }
}

/// What is wrong with the next ID token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tweak {
    Nothing,
    /// Signed with another key under the same key id.
    BadSignature,
    /// For another client.
    OtherAudience,
    /// Expired a minute ago (by the kernel's clock).
    Expired,
    /// A nonce other than the one the sign-in sent.
    WrongNonce,
    /// `alg: none`, no signature.
    AlgNone,
    /// From another issuer.
    OtherIssuer,
}

/// A code the authorization endpoint gave out.
struct Grant {
    account: Account,
    redirect_uri: String,
    nonce: String,
    code_challenge: String,
}

struct Shared {
    issuer: String,
    clock: Clock,
    accounts: HashMap<String, Account>,
    codes: HashMap<String, Grant>,
    tweak: Tweak,
    token_requests: usize,
}

pub struct MockOidc {
    pub issuer: String,
    shared: Arc<Mutex<Shared>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MockOidc {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MockOidc {
    /// A provider on a local port whose ID tokens are dated by `clock`.
    pub async fn start(clock: Clock) -> MockOidc {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the mock OpenID provider");
        let addr = listener.local_addr().expect("mock provider address");
        let issuer = format!("http://127.0.0.1:{}", addr.port());
        let shared = Arc::new(Mutex::new(Shared {
            issuer: issuer.clone(),
            clock,
            accounts: HashMap::new(),
            codes: HashMap::new(),
            tweak: Tweak::Nothing,
            token_requests: 0,
        }));
        let router = axum::Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .route("/token", post(token))
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        MockOidc {
            issuer,
            shared,
            task,
        }
    }

    fn shared(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().expect("mock provider state")
    }

    /// Adds (or replaces) an account, keyed by its subject.
    pub fn add_account(&self, account: Account) {
        self.shared()
            .accounts
            .insert(account.subject.clone(), account);
    }

    /// Removes an account: the provider refuses to sign it in.
    pub fn remove_account(&self, subject: &str) {
        self.shared().accounts.remove(subject);
    }

    pub fn set_groups(&self, subject: &str, groups: &[&str]) {
        if let Some(account) = self.shared().accounts.get_mut(subject) {
            account.groups = groups.iter().map(|g| (*g).to_owned()).collect();
        }
    }

    /// What is wrong with the ID tokens from now on.
    pub fn set_tweak(&self, tweak: Tweak) {
        self.shared().tweak = tweak;
    }

    pub fn token_requests(&self) -> usize {
        self.shared().token_requests
    }

    /// The staff member `subject` signs in at the provider's page that `authorize_url`
    /// opens: answers the query the provider sends the browser back with (a code, or
    /// `error=access_denied` for an account it does not have). Panics when the request
    /// is not a code flow with PKCE S256, a state and a nonce for this client.
    pub fn authorize(&self, authorize_url: &str, subject: &str) -> String {
        let (_, query) = authorize_url
            .split_once('?')
            .expect("the authorization URL has a query");
        let params: HashMap<String, String> = form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        let param = |name: &str| {
            params
                .get(name)
                .unwrap_or_else(|| panic!("no `{name}` in {authorize_url}"))
                .clone()
        };
        assert!(authorize_url.starts_with(&format!("{}/authorize?", self.issuer)));
        assert_eq!(param("response_type"), "code");
        assert_eq!(param("client_id"), CLIENT_ID);
        assert_eq!(param("code_challenge_method"), "S256");
        assert!(param("scope").split(' ').any(|s| s == "openid"));
        let state = param("state");
        assert!(state.len() >= 16, "an unguessable state: {state}");
        let answer = |pairs: &[(&str, &str)]| {
            form_urlencoded::Serializer::new(String::new())
                .extend_pairs(pairs)
                .finish()
        };
        let mut shared = self.shared();
        let Some(account) = shared.accounts.get(subject).cloned() else {
            return answer(&[("error", "access_denied"), ("state", &state)]);
        };
        let code = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>());
        shared.codes.insert(
            code.clone(),
            Grant {
                account,
                redirect_uri: param("redirect_uri"),
                nonce: param("nonce"),
                code_challenge: param("code_challenge"),
            },
        );
        answer(&[("code", &code), ("state", &state)])
    }
}

async fn discovery(State(shared): State<Arc<Mutex<Shared>>>) -> Json<Value> {
    let issuer = shared.lock().unwrap().issuer.clone();
    Json(json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "jwks_uri": format!("{issuer}/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid", "email", "profile"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "code_challenge_methods_supported": ["S256"],
    }))
}

async fn jwks() -> Json<Value> {
    let key = EncodingKey::from_rsa_der(&super::mock_providers::pem_der(SIGNING_KEY_PEM));
    let mut jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&key, Algorithm::RS256)
        .expect("the test key's JWK");
    jwk.common.key_id = Some(KEY_ID.to_owned());
    let mut jwk = serde_json::to_value(jwk).expect("a JWK");
    jwk["use"] = json!("sig");
    Json(json!({ "keys": [jwk] }))
}

fn token_error(error: &str) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": error }))).into_response()
}

/// The client's credentials: HTTP Basic (the default of most clients) or in the form.
fn client_authenticated(headers: &HeaderMap, form: &HashMap<String, String>) -> bool {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|v| base64::engine::general_purpose::STANDARD.decode(v).ok())
        .and_then(|v| String::from_utf8(v).ok());
    let decode = |s: &str| {
        form_urlencoded::parse(format!("v={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    match basic.as_deref().and_then(|b| b.split_once(':')) {
        Some((id, secret)) => decode(id) == CLIENT_ID && decode(secret) == CLIENT_SECRET,
        None => {
            form.get("client_id").map(String::as_str) == Some(CLIENT_ID)
                && form.get("client_secret").map(String::as_str) == Some(CLIENT_SECRET)
        }
    }
}

async fn token(
    State(shared): State<Arc<Mutex<Shared>>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let form: HashMap<String, String> = form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    let mut shared = shared.lock().unwrap();
    shared.token_requests += 1;
    if !client_authenticated(&headers, &form) {
        return token_error("invalid_client");
    }
    if form.get("grant_type").map(String::as_str) != Some("authorization_code") {
        return token_error("unsupported_grant_type");
    }
    let Some(grant) = form.get("code").and_then(|code| shared.codes.remove(code)) else {
        return token_error("invalid_grant");
    };
    let verifier = form.get("code_verifier").cloned().unwrap_or_default();
    let challenge = {
        use sha2::Digest;
        URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()))
    };
    if challenge != grant.code_challenge || form.get("redirect_uri") != Some(&grant.redirect_uri) {
        return token_error("invalid_grant");
    }
    let id_token = id_token(&shared, &grant);
    Json(json!({
        "access_token": URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>()),
        "token_type": "Bearer",
        "expires_in": 3600,
        "id_token": id_token,
    }))
    .into_response()
}

/// The ID token of a grant, as the test's [`Tweak`] has it.
fn id_token(shared: &Shared, grant: &Grant) -> String {
    let tweak = shared.tweak;
    let now = shared.clock.now().timestamp();
    let account = &grant.account;
    let mut claims = json!({
        "iss": if tweak == Tweak::OtherIssuer { "https://other-issuer.example" } else { shared.issuer.as_str() },
        "sub": account.subject,
        "aud": if tweak == Tweak::OtherAudience { "another-client" } else { CLIENT_ID },
        "iat": now - 5,
        "exp": if tweak == Tweak::Expired { now - 60 } else { now + 300 },
        "nonce": if tweak == Tweak::WrongNonce { "not-the-nonce" } else { grant.nonce.as_str() },
        "email": account.email,
        "email_verified": account.email_verified,
        "name": account.name,
        "groups": account.groups,
    });
    for (name, value) in &account.extra_claims {
        claims[name] = value.clone();
    }
    if tweak == Tweak::AlgNone {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
        return format!("{header}.{payload}.");
    }
    let pem = if tweak == Tweak::BadSignature {
        FORGED_KEY_PEM
    } else {
        SIGNING_KEY_PEM
    };
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(KEY_ID.to_owned());
    let key = EncodingKey::from_rsa_der(&super::mock_providers::pem_der(pem));
    jsonwebtoken::encode(&header, &claims, &key).expect("signing an ID token")
}
