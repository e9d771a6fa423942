//! Company routes (`/v1/company/…`): companies from ConnectWise and manual ones, sync.

use std::sync::Arc;

use crate::EdgeState;
use crate::routes::Route;

/// The company routes, to be tried before the rest of the table.
pub fn routes(_state: Arc<EdgeState>, _body_limit: u64) -> Vec<Route> {
    Vec::new()
}
