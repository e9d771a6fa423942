//! ttscm-vault.
