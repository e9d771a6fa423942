//! ttscm-identity.
