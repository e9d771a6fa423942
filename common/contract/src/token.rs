//! API tokens as every component sees them: the `ttscm_` prefix that marks one, and the SHA-256
//! by which it is stored, cached and looked up (the token itself never crosses the bus or
//! reaches the store).
//!
//! An API token is [`API_TOKEN_PREFIX`] + 43 base64url characters (256 random bits). With that
//! much entropy a fast hash is the right one (no password stretching), and it lets the edge send
//! just the hash to identity. The same hash keys refresh tokens and sign-in keys, which are as
//! random. Pure functions, no I/O.

/// Prefix of every API token, so scanners and the edge can recognise one.
pub const API_TOKEN_PREFIX: &str = "ttscm_";

/// The SHA-256 of a token, as the edge's caches key it.
pub type TokenDigest = [u8; 32];

/// Whether `token` has the API token prefix (as opposed to an access token, a JWT).
pub fn is_api_token(token: &str) -> bool {
    token.starts_with(API_TOKEN_PREFIX)
}

/// The SHA-256 of `token`.
pub fn token_digest(token: &str) -> TokenDigest {
    ring::digest::digest(&ring::digest::SHA256, token.as_bytes())
        .as_ref()
        .try_into()
        .expect("SHA-256 digests are 32 bytes")
}

/// The lowercase hex SHA-256 of `token`: how it is stored and sent over the bus.
pub fn token_hash(token: &str) -> String {
    hex::encode(token_digest(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_the_lowercase_hex_sha256_of_the_token() {
        assert_eq!(
            token_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(hex::encode(token_digest("abc")), token_hash("abc"));
        assert_eq!(
            token_hash(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn api_tokens_are_told_apart_by_their_prefix() {
        assert!(is_api_token("ttscm_AAAA"));
        assert!(
            !is_api_token("ttscmr_AAAA"),
            "a refresh token is not an API token"
        );
        assert!(!is_api_token("eyJhbGciOiJFZERTQSJ9.e30.sig"));
    }
}
