//! The Consumer kind on the shared engine.

use crate::api::common::{AssetStatus, CommonSpec};
use crate::api::consumer::Consumer;
use crate::jetstream::owner::Owner;
use crate::jetstream::stream_config::InvalidSpec;

use super::engine::{Desired, Managed};
use super::registry::AssetRef;

impl Managed for Consumer {
    const KIND: &'static str = "Consumer";
    const FINALIZER: &'static str = "consumer.nats.io/finalizer";
    const NOUN: &'static str = "consumer";
    const LOST_ON_RECREATE: &'static str =
        "its delivery state (acknowledged and pending messages) was lost";

    fn common(&self) -> &CommonSpec {
        &self.spec.common
    }

    fn asset_status(&self) -> Option<&AssetStatus> {
        self.status.as_ref()
    }

    fn asset(&self) -> AssetRef {
        AssetRef::Consumer {
            stream: self.spec.stream_name.clone(),
            name: self.spec.durable_name.clone(),
        }
    }

    fn desired(&self, _owner: &Owner) -> Result<Desired, InvalidSpec> {
        // The config also depends on the stream's limits: built at apply time.
        Ok(Desired::Consumer(Box::new(self.spec.clone())))
    }
}
