//! TOTP seeds as a `totp` field stores them — an `otpauth://totp/…` URI or a bare base32
//! secret — and their codes (RFC 6238), with `totp-rs`. The credential service parses a value
//! to validate it before it is sealed; vault parses the opened value to compute a code, so on
//! the code path the seed never leaves vault.
//!
//! Accepted: a URI's `secret` (base32), `algorithm` (`SHA1`, `SHA256`, `SHA512`), `digits`
//! (6–8) and `period` (1–300 s; issuer and account name are kept in the value, not used); a
//! bare secret is base32 (case, spaces and `=` padding ignored) with SHA-1, 6 digits and 30 s,
//! what authenticator apps assume. Secrets shorter than 80 bits (16 base32 characters) are
//! refused: RFC 4226 asks for 128, but many services still issue 80-bit seeds.

use std::time::{SystemTime, UNIX_EPOCH};

use totp_rs::{Algorithm, Builder, Secret, Totp};

/// The shortest secret accepted, in bytes (80 bits).
const MIN_SECRET_BYTES: usize = 10;

/// A parsed seed; `Debug` hides it, and it is wiped on drop.
pub struct TotpSeed(Totp);

impl std::fmt::Debug for TotpSeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "TotpSeed({}, {} digits, {} s, ***)",
            self.0.algorithm(),
            self.0.digits(),
            self.0.step()
        )
    }
}

/// A code and how long it stays valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TotpCode {
    /// The digits.
    pub code: String,
    /// Seconds per code.
    pub period: u64,
    /// Seconds until the next code.
    pub expires_in: u64,
}

impl TotpSeed {
    /// Parses a stored value; the error says what is wrong without repeating the value.
    pub fn parse(value: &str) -> Result<Self, &'static str> {
        let value = value.trim();
        let totp = if value
            .get(..10)
            .is_some_and(|s| s.eq_ignore_ascii_case("otpauth://"))
        {
            let totp = Totp::from_url_unchecked(value)
                .map_err(|_| "must be an otpauth://totp/ URI with a base32 secret, or a base32 secret")?;
            if !(6..=8).contains(&totp.digits()) {
                return Err("an otpauth URI's digits must be 6, 7 or 8");
            }
            if !(1..=300).contains(&totp.step()) {
                return Err("an otpauth URI's period must be 1 to 300 seconds");
            }
            totp
        } else {
            let cleaned: String = value
                .chars()
                .filter(|c| !c.is_whitespace() && *c != '=')
                .map(|c| c.to_ascii_uppercase())
                .collect();
            let secret = Secret::try_from_base32(&cleaned).map_err(
                |_| "must be a base32 TOTP secret (letters A–Z and digits 2–7) or an otpauth://totp/ URI",
            )?;
            Builder::new()
                .with_algorithm(Algorithm::SHA1)
                .with_secret(secret)
                .build_noncompliant()
        };
        let seed = Self(totp);
        if seed.secret_len() < MIN_SECRET_BYTES {
            return Err("a TOTP secret must be at least 80 bits (16 base32 characters)");
        }
        Ok(seed)
    }

    fn secret_len(&self) -> usize {
        self.0.secret().as_ref().len()
    }

    /// The code at `unix` seconds.
    pub fn code_at(&self, unix: u64) -> TotpCode {
        let period = self.0.step();
        TotpCode {
            code: self.0.generate(unix).to_string(),
            period,
            expires_in: period - unix % period,
        }
    }

    /// The code now (the system clock).
    pub fn code_now(&self) -> TotpCode {
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.code_at(unix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B's SHA-1 secret ("12345678901234567890"), in base32.
    const RFC_SECRET: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";

    #[test]
    fn a_bare_secret_gives_the_rfc_6238_codes() {
        let seed = TotpSeed::parse(RFC_SECRET).expect("parses");
        // Appendix B, 8 digits: 94287082 at 59 s, 07081804 at 1111111109; 6 digits are the last six.
        assert_eq!(seed.code_at(59).code, "287082");
        assert_eq!(seed.code_at(1_111_111_109).code, "081804");
        assert_eq!(seed.code_at(59).expires_in, 1);
        assert_eq!(seed.code_at(60).expires_in, 30);
        // Lower case, spaces and padding are what people paste.
        let pasted = TotpSeed::parse("gezd gnbv gy3t qojq gezd gnbv gy3t qojq====").expect("parses");
        assert_eq!(pasted.code_at(59).code, "287082");
    }

    #[test]
    fn a_uri_sets_digits_period_and_algorithm() {
        let uri = format!(
            "otpauth://totp/ACME%20Co:alice%40example.com?secret={RFC_SECRET}&issuer=ACME%20Co&digits=8&period=30&algorithm=SHA1"
        );
        let seed = TotpSeed::parse(&uri).expect("parses");
        assert_eq!(seed.code_at(59).code, "94287082");
        assert_eq!(seed.code_at(1_111_111_109).code, "07081804");
        // Appendix B's SHA-256 secret is the 32-byte repetition; 8 digits at 59 s: 46119246.
        let sha256 = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZA";
        let seed = TotpSeed::parse(&format!(
            "otpauth://totp/x?secret={sha256}&digits=8&algorithm=SHA256"
        ))
        .expect("parses");
        assert_eq!(seed.code_at(59).code, "46119246");
        let seed =
            TotpSeed::parse(&format!("otpauth://totp/x?secret={RFC_SECRET}&period=60")).expect("parses");
        assert_eq!((seed.code_at(61).period, seed.code_at(61).expires_in), (60, 59));
    }

    #[test]
    fn bad_seeds_are_refused_without_echoing_them() {
        for bad in [
            "",
            "not base32 at all!",
            "GEZDGNBV",
            "otpauth://hotp/x?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ",
            "otpauth://totp/x?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&digits=12",
            "otpauth://totp/x?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&period=0",
            "otpauth://totp/x?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&algorithm=MD5",
            "otpauth://totp/x?digits=6",
        ] {
            let error = TotpSeed::parse(bad).expect_err(bad);
            assert!(!error.contains("GEZD"), "{error}");
        }
        assert!(!format!("{:?}", TotpSeed::parse(RFC_SECRET).expect("parses")).contains("GEZD"));
    }
}
