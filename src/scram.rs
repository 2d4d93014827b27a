//! SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677) as Kafka speaks them: the
//! server side of the exchange (used by `network`'s SASL), the client side (a broker
//! logging in to another over a SASL inter-broker listener), and the derivation of stored
//! credentials (used by `api`'s AlterUserScramCredentials, PLAIN, and
//! `storage format --add-scram`). Only math and parsing: no I/O.
//!
//! The broker keeps only what RFC 5802 calls StoredKey and ServerKey, with the salt
//! and iteration count; never the password or the salted password.

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256, Sha512};

use crate::metadata::ScramCredential;

/// Kafka's bounds on SCRAM iterations.
pub const MIN_ITERATIONS: i32 = 4096;
pub const MAX_ITERATIONS: i32 = 16384;

/// A SCRAM mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mechanism {
    Sha256,
    Sha512,
}

impl Mechanism {
    /// The SASL name (`SCRAM-SHA-256`).
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Sha256 => "SCRAM-SHA-256",
            Mechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    pub fn from_name(name: &str) -> Option<Mechanism> {
        match name {
            "SCRAM-SHA-256" => Some(Mechanism::Sha256),
            "SCRAM-SHA-512" => Some(Mechanism::Sha512),
            _ => None,
        }
    }

    /// Kafka's ScramMechanism type code (AlterUserScramCredentials): 1 and 2.
    pub fn code(self) -> i8 {
        match self {
            Mechanism::Sha256 => 1,
            Mechanism::Sha512 => 2,
        }
    }

    pub fn from_code(code: i8) -> Option<Mechanism> {
        match code {
            1 => Some(Mechanism::Sha256),
            2 => Some(Mechanism::Sha512),
            _ => None,
        }
    }

    pub fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            Mechanism::Sha256 => {
                let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key size");
                mac.update(data);
                mac.finalize().into_bytes().to_vec()
            }
            Mechanism::Sha512 => {
                let mut mac = Hmac::<Sha512>::new_from_slice(key).expect("any key size");
                mac.update(data);
                mac.finalize().into_bytes().to_vec()
            }
        }
    }

    pub fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            Mechanism::Sha256 => Sha256::digest(data).to_vec(),
            Mechanism::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    /// RFC 5802's Hi(): PBKDF2 with this HMAC and one output block.
    pub fn salted_password(self, password: &[u8], salt: &[u8], iterations: i32) -> Vec<u8> {
        let mut first = salt.to_vec();
        first.extend_from_slice(&1u32.to_be_bytes());
        let mut u = self.hmac(password, &first);
        let mut out = u.clone();
        for _ in 1..iterations.max(1) {
            u = self.hmac(password, &u);
            for (o, x) in out.iter_mut().zip(&u) {
                *o ^= x;
            }
        }
        out
    }

    /// The stored credential for a salted password (what AlterUserScramCredentials
    /// sends), as Kafka's ScramFormatter derives it.
    pub fn credential(
        self,
        salted_password: &[u8],
        salt: &[u8],
        iterations: i32,
    ) -> ScramCredential {
        let client_key = self.hmac(salted_password, b"Client Key");
        ScramCredential {
            salt: salt.to_vec(),
            iterations,
            stored_key: self.hash(&client_key),
            server_key: self.hmac(salted_password, b"Server Key"),
        }
    }

    /// A credential for `password` with a fresh random salt.
    pub fn credential_for_password(self, password: &str, iterations: i32) -> ScramCredential {
        let salt: [u8; 24] = rand::random();
        let salted = self.salted_password(password.as_bytes(), &salt, iterations);
        self.credential(&salted, &salt, iterations)
    }

    /// Whether `password` matches `credential` (PLAIN over SCRAM credentials).
    pub fn password_matches(self, password: &str, credential: &ScramCredential) -> bool {
        let salted =
            self.salted_password(password.as_bytes(), &credential.salt, credential.iterations);
        let fresh = self.credential(&salted, &credential.salt, credential.iterations);
        constant_time_eq(&fresh.stored_key, &credential.stored_key)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// Why an exchange failed (the client gets SASL_AUTHENTICATION_FAILED with a message
/// that never says which part was wrong).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScramError {
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    #[error("authentication failed: invalid credentials")]
    BadCredentials,
}

/// The attributes of a SCRAM message (`k=v,...`).
fn attributes(message: &str) -> impl Iterator<Item = (char, &str)> {
    message.split(',').filter_map(|part| {
        let mut chars = part.chars();
        let key = chars.next()?;
        part.get(1..)?.strip_prefix('=').map(|v| (key, v))
    })
}

fn attribute(message: &str, key: char) -> Option<&str> {
    attributes(message).find(|(k, _)| *k == key).map(|(_, v)| v)
}

/// RFC 5802 saslname decoding: `=2C` is ',' and `=3D` is '='.
fn decode_name(name: &str) -> Result<String, ScramError> {
    let out = name.replace("=2C", ",").replace("=3D", "=");
    if out.contains('=') && !name.contains("=3D") {
        return Err(ScramError::Malformed("bad escape in the user name"));
    }
    Ok(out)
}

/// The server side of one exchange.
pub enum ServerExchange {
    /// Waiting for the client's first message.
    Start { mechanism: Mechanism },
    /// Sent server-first; waiting for client-final.
    Challenged {
        mechanism: Mechanism,
        user: String,
        credential: ScramCredential,
        client_first_bare: String,
        server_first: String,
        nonce: String,
    },
}

/// What the exchange answers a client message with.
pub enum Step {
    /// Send this challenge and wait for the next message.
    Continue(Vec<u8>),
    /// Authenticated as this user; send the server-final message.
    Done { user: String, server_final: Vec<u8> },
}

impl ServerExchange {
    pub fn new(mechanism: Mechanism) -> ServerExchange {
        ServerExchange::Start { mechanism }
    }

    /// The user named in client-first, once known.
    pub fn user(&self) -> Option<&str> {
        match self {
            ServerExchange::Challenged { user, .. } => Some(user),
            ServerExchange::Start { .. } => None,
        }
    }

    /// Takes the client's next message. `lookup` finds a user's credential. An unknown
    /// user still gets a challenge (with a made-up salt) and fails at the proof, so the
    /// answer never tells whether a user exists.
    pub fn step(
        &mut self,
        message: &[u8],
        lookup: impl Fn(&str, Mechanism) -> Option<ScramCredential>,
    ) -> Result<Step, ScramError> {
        let text = std::str::from_utf8(message).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        match self {
            ServerExchange::Start { mechanism } => {
                let mechanism = *mechanism;
                // gs2-header: "n,," or "n,a=authzid," (no channel binding).
                let rest = text
                    .strip_prefix("n,")
                    .or_else(|| text.strip_prefix("y,"))
                    .ok_or(ScramError::Malformed("channel binding is not supported"))?;
                let (authzid, bare) = rest
                    .split_once(',')
                    .ok_or(ScramError::Malformed("no gs2 header"))?;
                let user = decode_name(
                    attribute(bare, 'n').ok_or(ScramError::Malformed("no user name"))?,
                )?;
                if let Some(authz) = authzid.strip_prefix("a=") {
                    if decode_name(authz)? != user {
                        return Err(ScramError::BadCredentials);
                    }
                }
                let client_nonce =
                    attribute(bare, 'r').ok_or(ScramError::Malformed("no client nonce"))?;
                if client_nonce.is_empty() {
                    return Err(ScramError::Malformed("empty client nonce"));
                }
                let credential = lookup(&user, mechanism).unwrap_or_else(|| {
                    // Unknown user: a challenge like any other, which cannot succeed.
                    let mut c = mechanism.credential(&[0; 64], &user_salt(&user), MIN_ITERATIONS);
                    c.stored_key = Vec::new();
                    c
                });
                let server_nonce: [u8; 24] = rand::random();
                let nonce = format!("{client_nonce}{}", b64().encode(server_nonce));
                let server_first = format!(
                    "r={nonce},s={},i={}",
                    b64().encode(&credential.salt),
                    credential.iterations
                );
                let challenge = server_first.clone().into_bytes();
                *self = ServerExchange::Challenged {
                    mechanism,
                    user,
                    credential,
                    client_first_bare: bare.to_string(),
                    server_first,
                    nonce,
                };
                Ok(Step::Continue(challenge))
            }
            ServerExchange::Challenged {
                mechanism,
                user,
                credential,
                client_first_bare,
                server_first,
                nonce,
            } => {
                let proof_at = text.rfind(",p=").ok_or(ScramError::Malformed("no proof"))?;
                let without_proof = &text[..proof_at];
                let proof = b64()
                    .decode(&text[proof_at + 3..])
                    .map_err(|_| ScramError::Malformed("proof is not base64"))?;
                // Kafka checks only that the client's nonce ends with the server's:
                // librdkafka before 2.1 sends its own nonce again in front of it.
                if !attribute(without_proof, 'r').is_some_and(|r| r.ends_with(nonce.as_str())) {
                    return Err(ScramError::BadCredentials);
                }
                let binding = attribute(without_proof, 'c')
                    .ok_or(ScramError::Malformed("no channel binding attribute"))?;
                if binding != "biws" && binding != "eSws" {
                    return Err(ScramError::Malformed("channel binding is not supported"));
                }
                let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
                let signature = mechanism.hmac(&credential.stored_key, auth_message.as_bytes());
                if proof.len() != signature.len() || credential.stored_key.is_empty() {
                    return Err(ScramError::BadCredentials);
                }
                let client_key: Vec<u8> =
                    proof.iter().zip(&signature).map(|(p, s)| p ^ s).collect();
                if !constant_time_eq(&mechanism.hash(&client_key), &credential.stored_key) {
                    return Err(ScramError::BadCredentials);
                }
                let server_signature =
                    mechanism.hmac(&credential.server_key, auth_message.as_bytes());
                Ok(Step::Done {
                    user: user.clone(),
                    server_final: format!("v={}", b64().encode(server_signature)).into_bytes(),
                })
            }
        }
    }
}

/// A stable made-up salt for an unknown user, so repeated attempts look alike.
fn user_salt(user: &str) -> Vec<u8> {
    Sha256::digest(format!("strata-unknown-user:{user}").as_bytes())[..24].to_vec()
}

/// RFC 5802 saslname encoding: ',' as `=2C`, '=' as `=3D`.
fn encode_name(name: &str) -> String {
    name.replace('=', "=3D").replace(',', "=2C")
}

/// The client's side of one exchange: client-first, then client-final from the
/// server's challenge, then the server's signature checked (so a broker never talks
/// to an impostor that merely accepted it).
pub struct ClientExchange {
    mechanism: Mechanism,
    password: String,
    client_first_bare: String,
    nonce: String,
    /// After client-final: the salted password and the auth message, for checking
    /// server-final.
    sent_final: Option<(Vec<u8>, String)>,
}

impl ClientExchange {
    /// Starts an exchange for `user`; returns it and the client-first message.
    pub fn start(mechanism: Mechanism, user: &str, password: &str) -> (ClientExchange, Vec<u8>) {
        let nonce = b64().encode(rand::random::<[u8; 24]>());
        let client_first_bare = format!("n={},r={nonce}", encode_name(user));
        let first = format!("n,,{client_first_bare}").into_bytes();
        let exchange = ClientExchange {
            mechanism,
            password: password.to_string(),
            client_first_bare,
            nonce,
            sent_final: None,
        };
        (exchange, first)
    }

    /// The client-final message answering `server_first`.
    pub fn client_final(&mut self, server_first: &[u8]) -> Result<Vec<u8>, ScramError> {
        let server_first = std::str::from_utf8(server_first)
            .map_err(|_| ScramError::Malformed("server-first is not UTF-8"))?;
        let nonce = attribute(server_first, 'r').ok_or(ScramError::Malformed("no nonce"))?;
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() {
            return Err(ScramError::Malformed(
                "the server's nonce does not extend ours",
            ));
        }
        let salt = attribute(server_first, 's')
            .and_then(|s| b64().decode(s).ok())
            .ok_or(ScramError::Malformed("no salt"))?;
        let iterations: i32 = attribute(server_first, 'i')
            .and_then(|i| i.parse().ok())
            // Kafka's bounds: fewer would make the proof cheap to attack offline,
            // more would stall this worker on the key derivation.
            .filter(|i| (MIN_ITERATIONS..=MAX_ITERATIONS).contains(i))
            .ok_or(ScramError::Malformed("iteration count outside 4096-16384"))?;
        let salted = self
            .mechanism
            .salted_password(self.password.as_bytes(), &salt, iterations);
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let client_key = self.mechanism.hmac(&salted, b"Client Key");
        let stored_key = self.mechanism.hash(&client_key);
        let signature = self.mechanism.hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(k, s)| k ^ s)
            .collect();
        self.sent_final = Some((salted, auth_message));
        Ok(format!("{without_proof},p={}", b64().encode(proof)).into_bytes())
    }

    /// Checks server-final's signature (`v=`); an error (`e=`) or a wrong signature
    /// fails.
    pub fn check_server_final(&self, server_final: &[u8]) -> Result<(), ScramError> {
        let (salted, auth_message) = self
            .sent_final
            .as_ref()
            .ok_or(ScramError::Malformed("server-final before client-final"))?;
        let server_final = std::str::from_utf8(server_final)
            .map_err(|_| ScramError::Malformed("server-final is not UTF-8"))?;
        let signature = attribute(server_final, 'v')
            .and_then(|v| b64().decode(v).ok())
            .ok_or(ScramError::BadCredentials)?;
        let server_key = self.mechanism.hmac(salted, b"Server Key");
        let expected = self.mechanism.hmac(&server_key, auth_message.as_bytes());
        if constant_time_eq(&signature, &expected) {
            Ok(())
        } else {
            Err(ScramError::BadCredentials)
        }
    }
}

/// A client's side of the exchange (tests and tools).
pub fn client_proof(
    mechanism: Mechanism,
    password: &str,
    client_first_bare: &str,
    server_first: &str,
    client_final_without_proof: &str,
) -> Option<String> {
    let salt = b64().decode(attribute(server_first, 's')?).ok()?;
    let iterations: i32 = attribute(server_first, 'i')?.parse().ok()?;
    let salted = mechanism.salted_password(password.as_bytes(), &salt, iterations);
    let client_key = mechanism.hmac(&salted, b"Client Key");
    let stored_key = mechanism.hash(&client_key);
    let auth = format!("{client_first_bare},{server_first},{client_final_without_proof}");
    let signature = mechanism.hmac(&stored_key, auth.as_bytes());
    let proof: Vec<u8> = client_key
        .iter()
        .zip(&signature)
        .map(|(k, s)| k ^ s)
        .collect();
    Some(b64().encode(proof))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677's SCRAM-SHA-256 example (user "user", password "pencil").
    #[test]
    fn rfc7677_example_values() {
        let m = Mechanism::Sha256;
        let salt = b64().decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let salted = m.salted_password(b"pencil", &salt, 4096);
        let client_first_bare = "n=user,r=rOprNGfwEbeRWgbNEkqO";
        let server_first =
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let without_proof = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        assert_eq!(
            client_proof(m, "pencil", client_first_bare, server_first, without_proof).unwrap(),
            "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        let cred = m.credential(&salted, &salt, 4096);
        let auth = format!("{client_first_bare},{server_first},{without_proof}");
        assert_eq!(
            b64().encode(m.hmac(&cred.server_key, auth.as_bytes())),
            "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
        assert!(m.password_matches("pencil", &cred));
        assert!(!m.password_matches("pencil2", &cred));
    }

    fn run(
        m: Mechanism,
        stored_password: &str,
        password: &str,
        user: &str,
    ) -> Result<String, ScramError> {
        let cred = m.credential_for_password(stored_password, 4096);
        let lookup = |u: &str, mech: Mechanism| (u == "alice" && mech == m).then(|| cred.clone());
        let mut server = ServerExchange::new(m);
        let bare = format!("n={user},r=clientnonce123");
        let Step::Continue(first) = server.step(format!("n,,{bare}").as_bytes(), lookup)? else {
            panic!("expected a challenge")
        };
        let server_first = String::from_utf8(first).unwrap();
        let nonce = attribute(&server_first, 'r').unwrap();
        assert!(nonce.starts_with("clientnonce123"));
        let without_proof = format!("c=biws,r={nonce}");
        let proof = client_proof(m, password, &bare, &server_first, &without_proof).unwrap();
        match server.step(format!("{without_proof},p={proof}").as_bytes(), lookup)? {
            Step::Done { user, server_final } => {
                assert!(server_final.starts_with(b"v="));
                Ok(user)
            }
            Step::Continue(_) => panic!("expected the end"),
        }
    }

    #[test]
    fn exchanges_succeed_only_with_the_password() {
        for m in [Mechanism::Sha256, Mechanism::Sha512] {
            assert_eq!(run(m, "secret", "secret", "alice"), Ok("alice".into()));
            assert_eq!(
                run(m, "secret", "wrong", "alice"),
                Err(ScramError::BadCredentials)
            );
            assert_eq!(
                run(m, "secret", "secret", "bob"),
                Err(ScramError::BadCredentials)
            );
        }
        let mut server = ServerExchange::new(Mechanism::Sha256);
        assert!(server.step(b"garbage", |_, _| None).is_err());
        assert!(server.step(&[0xff, 0xfe], |_, _| None).is_err());
    }

    #[test]
    fn client_and_server_exchanges_agree_and_a_wrong_password_fails() {
        for m in [Mechanism::Sha256, Mechanism::Sha512] {
            let credential = m.credential_for_password("s3cret", 4096);
            for (password, ok) in [("s3cret", true), ("wrong", false)] {
                let (mut client, first) = ClientExchange::start(m, "bro,ker=1", password);
                let mut server = ServerExchange::new(m);
                let lookup =
                    |user: &str, _: Mechanism| (user == "bro,ker=1").then(|| credential.clone());
                let Ok(Step::Continue(challenge)) = server.step(&first, lookup) else {
                    panic!("no challenge");
                };
                let last = client.client_final(&challenge).unwrap();
                match server.step(&last, lookup) {
                    Ok(Step::Done { user, server_final }) => {
                        assert!(ok);
                        assert_eq!(user, "bro,ker=1");
                        client.check_server_final(&server_final).unwrap();
                        assert!(client.check_server_final(b"v=AAAA").is_err());
                    }
                    Err(ScramError::BadCredentials) => assert!(!ok),
                    _ => panic!("unexpected step"),
                }
            }
        }
    }
}
