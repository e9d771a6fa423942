//! The wire contract between TTSCM components: bus subjects, request/reply payloads, error codes,
//! permission names and the principal carried in bus headers. Serde only, no I/O.
//!
//! **API Boundary**: this is the only crate services share about each other. Domain and storage
//! types never cross the bus; each service converts to and from these types explicitly.

pub mod audit;
pub mod company;
pub mod component;
pub mod credential;
pub mod error;
pub mod event;
pub mod health;
pub mod identity;
pub mod operation;
pub mod permission;
pub mod principal;
pub mod schema;
pub mod subjects;
pub mod token;
pub mod vault;
pub mod webhook;

pub use component::Component;
pub use error::{ErrorCode, FieldError, WireError};
pub use operation::{Operation, OperationInfo, operations};

#[doc(hidden)]
pub use inventory;
pub use permission::{Permission, PermissionSet};
pub use principal::{Principal, PrincipalKind};
