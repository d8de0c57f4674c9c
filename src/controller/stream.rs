//! The Stream kind on the shared engine.

use crate::api::common::{AssetStatus, CommonSpec};
use crate::api::stream::Stream;
use crate::jetstream::owner::Owner;
use crate::jetstream::stream_config::{self, InvalidSpec};

use super::engine::{Desired, Managed};
use super::registry::AssetRef;

impl Managed for Stream {
    const KIND: &'static str = "Stream";
    const FINALIZER: &'static str = "stream.nats.io/finalizer";
    const NOUN: &'static str = "stream";

    fn common(&self) -> &CommonSpec {
        &self.spec.common
    }

    fn asset_status(&self) -> Option<&AssetStatus> {
        self.status.as_ref()
    }

    fn asset(&self) -> AssetRef {
        AssetRef::Stream(self.spec.name.clone())
    }

    fn desired(&self, owner: &Owner) -> Result<Desired, InvalidSpec> {
        stream_config::desired(&self.spec, owner).map(|c| Desired::Stream(Box::new(c)))
    }
}
