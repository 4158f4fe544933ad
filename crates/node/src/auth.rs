//! Authentication: the tenant comes from a verified JWT (HS256 or RS256).
//!
//! [`Authenticator::tenant_for`] turns an `Authorization: Bearer <jwt>` header and the
//! tenant named by a request path into the tenant the request acts for:
//! - auth disabled: the path's tenant, or `default`;
//! - no token, or a token that does not verify (forged, expired, wrong algorithm or
//!   issuer): [`Error::Unauthenticated`] (401);
//! - a path tenant other than the token's: [`Error::Forbidden`] (403).
//!
//! A token whose claim [`OPERATOR_CLAIM`] (`plexspaces_operator`) is `true` may also see
//! node-wide figures (every tenant's totals on the dashboard and in `MetricsSummary`);
//! every other token sees only its own tenant's numbers.
//!
//! A verified token also names who calls: its `sub` ([`Identity::subject`]) and its roles
//! ([`ROLES_CLAIM`], an array of strings or one space-separated string). The node passes
//! them to the actor with each message, where `AuthenticationFacet` and
//! `AuthorizationFacet` ([`crate::facets`]) read them.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Map, Value};

use crate::config::AuthConfig;
use crate::error::{Error, Result};

/// The tenant when none is given.
pub const DEFAULT_TENANT: &str = "default";

/// The claim that marks an operator token (with the value `true`).
pub const OPERATOR_CLAIM: &str = "plexspaces_operator";

/// The claim that lists the caller's roles: an array of strings, or one string of roles
/// separated by spaces (the OAuth `scope` shape).
pub const ROLES_CLAIM: &str = "roles";

/// Who a verified request is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The tenant it acts for.
    pub tenant: String,
    /// Whether it may see node-wide figures: auth disabled, or the operator claim is `true`.
    pub operator: bool,
    /// The token's `sub`, if it has one (none with auth disabled).
    pub subject: Option<String>,
    /// The token's roles ([`ROLES_CLAIM`]); empty with auth disabled.
    pub roles: Vec<String>,
}

/// Verifies tokens and picks the tenant of each request. Cheap to clone.
#[derive(Clone)]
pub struct Authenticator {
    keys: Vec<(Algorithm, DecodingKey)>,
    tenant_claim: String,
    issuer: Option<String>,
    disabled: bool,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field(
                "algorithms",
                &self.keys.iter().map(|(a, _)| *a).collect::<Vec<_>>(),
            )
            .field("disabled", &self.disabled)
            .finish()
    }
}

impl Authenticator {
    /// From the `[auth]` config. With no key configured and auth not disabled, every
    /// request is refused (401): the node never runs open by accident.
    pub fn from_config(config: &AuthConfig) -> Result<Self> {
        let mut keys = Vec::new();
        if let Some(secret) = &config.jwt_secret {
            if secret.is_empty() {
                return Err(Error::Config("auth.jwt_secret is empty".into()));
            }
            keys.push((
                Algorithm::HS256,
                DecodingKey::from_secret(secret.expose().as_bytes()),
            ));
        }
        if let Some(file) = &config.jwt_public_key_file {
            let pem = std::fs::read(file).map_err(|e| {
                Error::Config(format!(
                    "cannot read auth.jwt_public_key_file {}: {e}",
                    file.display()
                ))
            })?;
            let key = DecodingKey::from_rsa_pem(&pem).map_err(|e| {
                Error::Config(format!("auth.jwt_public_key_file {}: {e}", file.display()))
            })?;
            keys.push((Algorithm::RS256, key));
        }
        Ok(Authenticator {
            keys,
            tenant_claim: config.tenant_claim.clone(),
            issuer: config.issuer.clone(),
            disabled: config.disabled,
        })
    }

    /// Whether auth is off.
    pub fn is_disabled(&self) -> bool {
        self.disabled
    }

    /// Whether a key to verify tokens is configured.
    pub fn has_keys(&self) -> bool {
        !self.keys.is_empty()
    }

    /// The tenant a request acts for (see the module docs).
    pub fn tenant_for(
        &self,
        authorization: Option<&str>,
        path_tenant: Option<&str>,
    ) -> Result<String> {
        self.identify(authorization, path_tenant).map(|i| i.tenant)
    }

    /// The tenant a request acts for and whether it is an operator (see the module docs).
    pub fn identify(
        &self,
        authorization: Option<&str>,
        path_tenant: Option<&str>,
    ) -> Result<Identity> {
        if self.disabled {
            return Ok(Identity {
                tenant: path_tenant.unwrap_or(DEFAULT_TENANT).to_owned(),
                operator: true,
                subject: None,
                roles: Vec::new(),
            });
        }
        let header = authorization.ok_or_else(|| {
            Error::Unauthenticated("missing authorization header (Bearer token)".into())
        })?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or_else(|| {
                Error::Unauthenticated("authorization header is not a Bearer token".into())
            })?
            .trim();
        let identity = self.verify_identity(token)?;
        match path_tenant {
            Some(p) if p != identity.tenant => Err(Error::Forbidden(format!(
                "token is for tenant {:?}, not {p:?}",
                identity.tenant
            ))),
            _ => Ok(identity),
        }
    }

    /// Verifies `token` and returns its tenant claim.
    pub fn verify(&self, token: &str) -> Result<String> {
        self.verify_identity(token).map(|i| i.tenant)
    }

    /// Verifies `token` and returns its tenant claim and operator flag.
    pub fn verify_identity(&self, token: &str) -> Result<Identity> {
        if self.keys.is_empty() {
            return Err(Error::Unauthenticated(
                "no token verification key is configured on this node".into(),
            ));
        }
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| Error::Unauthenticated(format!("malformed token: {e}")))?;
        let (alg, key) = self
            .keys
            .iter()
            .find(|(alg, _)| *alg == header.alg)
            .ok_or_else(|| {
                Error::Unauthenticated(format!("token algorithm {:?} is not accepted", header.alg))
            })?;
        let mut validation = Validation::new(*alg);
        validation.leeway = 0;
        validation.required_spec_claims = ["exp".to_owned()].into_iter().collect();
        if let Some(iss) = &self.issuer {
            validation.set_issuer(&[iss]);
        }
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, key, &validation)
            .map_err(|e| Error::Unauthenticated(format!("invalid token: {e}")))?;
        let operator = data.claims.get(OPERATOR_CLAIM) == Some(&Value::Bool(true));
        let subject = match data.claims.get("sub") {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            _ => None,
        };
        let roles = roles_of(data.claims.get(ROLES_CLAIM))?;
        match data.claims.get(&self.tenant_claim) {
            Some(Value::String(t)) if !t.is_empty() => Ok(Identity {
                tenant: t.clone(),
                operator,
                subject,
                roles,
            }),
            _ => Err(Error::Unauthenticated(format!(
                "token has no {:?} claim",
                self.tenant_claim
            ))),
        }
    }
}

/// The roles of a [`ROLES_CLAIM`] value: absent is none; an array of non-empty strings or
/// one space-separated string; anything else (numbers, nested values, a role with a comma
/// or a control character) does not verify.
fn roles_of(claim: Option<&Value>) -> Result<Vec<String>> {
    let bad = || Error::Unauthenticated(format!("token has a malformed {ROLES_CLAIM:?} claim"));
    let roles: Vec<String> = match claim {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned).ok_or_else(bad))
            .collect::<Result<_>>()?,
        Some(_) => return Err(bad()),
    };
    let well_formed = |r: &String| {
        !r.is_empty() && r.len() <= 256 && !r.contains(',') && !r.chars().any(char::is_control)
    };
    if !roles.iter().all(well_formed) {
        return Err(bad());
    }
    Ok(roles)
}

/// What a minted token says.
#[derive(Debug, Clone)]
pub struct TokenSpec<'a> {
    /// The tenant.
    pub tenant: &'a str,
    /// The claim that carries it.
    pub tenant_claim: &'a str,
    /// `sub`.
    pub subject: &'a str,
    /// Lifetime in seconds from now (negative: already expired, for tests).
    pub ttl_secs: i64,
    /// `iss`, if any.
    pub issuer: Option<&'a str>,
    /// Sets the operator claim ([`OPERATOR_CLAIM`]) to `true`.
    pub operator: bool,
    /// The roles ([`ROLES_CLAIM`], as an array); none: no claim.
    pub roles: &'a [&'a str],
}

fn claims(spec: &TokenSpec<'_>) -> Map<String, Value> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let mut claims = Map::new();
    claims.insert(spec.tenant_claim.to_owned(), Value::from(spec.tenant));
    claims.insert("sub".into(), Value::from(spec.subject));
    claims.insert("iat".into(), Value::from(now));
    claims.insert("exp".into(), Value::from(now + spec.ttl_secs));
    if let Some(iss) = spec.issuer {
        claims.insert("iss".into(), Value::from(iss));
    }
    if spec.operator {
        claims.insert(OPERATOR_CLAIM.into(), Value::Bool(true));
    }
    if !spec.roles.is_empty() {
        claims.insert(ROLES_CLAIM.into(), Value::from(spec.roles.to_vec()));
    }
    claims
}

/// Mints an HS256 token.
pub fn mint_hs256(spec: &TokenSpec<'_>, secret: &str) -> Result<String> {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims(spec),
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .map_err(|e| Error::BadRequest(format!("cannot mint token: {e}")))
}

/// Mints an RS256 token with a PEM private key.
pub fn mint_rs256(spec: &TokenSpec<'_>, private_key_pem: &[u8]) -> Result<String> {
    let key = EncodingKey::from_rsa_pem(private_key_pem)
        .map_err(|e| Error::BadRequest(format!("bad rsa private key: {e}")))?;
    jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims(spec), &key)
        .map_err(|e| Error::BadRequest(format!("cannot mint token: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    fn spec(tenant: &str, ttl: i64) -> TokenSpec<'_> {
        TokenSpec {
            tenant,
            tenant_claim: "tenant_id",
            subject: "test",
            ttl_secs: ttl,
            issuer: None,
            operator: false,
            roles: &[],
        }
    }

    fn hs() -> Authenticator {
        Authenticator::from_config(&AuthConfig {
            jwt_secret: Some(Secret::new("s3cret")),
            ..AuthConfig::default()
        })
        .unwrap()
    }

    #[test]
    fn hs256_tokens_verify_and_name_the_tenant() {
        let token = mint_hs256(&spec("acme", 60), "s3cret").unwrap();
        let auth = hs();
        let bearer = format!("Bearer {token}");
        assert_eq!(auth.tenant_for(Some(&bearer), None).unwrap(), "acme");
        assert_eq!(
            auth.tenant_for(Some(&bearer), Some("acme")).unwrap(),
            "acme"
        );
        assert_eq!(
            auth.tenant_for(Some(&bearer), Some("other"))
                .unwrap_err()
                .kind(),
            "forbidden"
        );
    }

    #[test]
    fn forged_expired_and_missing_tokens_are_unauthenticated() {
        let auth = hs();
        let forged = format!("Bearer {}", mint_hs256(&spec("acme", 60), "wrong").unwrap());
        let expired = format!(
            "Bearer {}",
            mint_hs256(&spec("acme", -120), "s3cret").unwrap()
        );
        for header in [
            Some(forged.as_str()),
            Some(expired.as_str()),
            Some("Bearer x.y.z"),
            Some("Basic abc"),
            None,
        ] {
            assert_eq!(
                auth.tenant_for(header, None).unwrap_err().kind(),
                "unauthenticated",
                "{header:?}"
            );
        }
    }

    #[test]
    fn only_tokens_with_the_operator_claim_are_operators() {
        let auth = hs();
        let plain = mint_hs256(&spec("acme", 60), "s3cret").unwrap();
        let operator = mint_hs256(
            &TokenSpec {
                operator: true,
                ..spec("acme", 60)
            },
            "s3cret",
        )
        .unwrap();
        let plain = auth
            .identify(Some(&format!("Bearer {plain}")), None)
            .unwrap();
        let operator = auth
            .identify(Some(&format!("Bearer {operator}")), None)
            .unwrap();
        assert_eq!((plain.tenant.as_str(), plain.operator), ("acme", false));
        assert_eq!(
            (operator.tenant.as_str(), operator.operator),
            ("acme", true)
        );
    }

    #[test]
    fn disabled_auth_uses_the_path_tenant_or_default() {
        let auth = Authenticator::from_config(&AuthConfig {
            disabled: true,
            ..AuthConfig::default()
        })
        .unwrap();
        assert_eq!(auth.tenant_for(None, None).unwrap(), "default");
        assert_eq!(auth.tenant_for(None, Some("t2")).unwrap(), "t2");
    }
}
