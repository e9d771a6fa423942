//! ttscm-credential.
