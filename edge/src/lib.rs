//! ttscm-edge.
