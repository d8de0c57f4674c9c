//! The Consumer kind.

use crate::api::common::{AssetStatus, CommonSpec};
use crate::api::consumer::Consumer;
use crate::jetstream::asset::{ConsumerId, ConsumerOps};
use crate::jetstream::consumer_config;
use crate::jetstream::mapping::InvalidSpec;
use crate::jetstream::owner::Owner;
use crate::jetstream::wire::{ConsumerConfig, StreamConfig};

use super::kinds::Managed;

impl Managed for Consumer {
    const NOUN: &'static str = "consumer";
    const LOST_ON_RECREATE: &'static str =
        "its delivery state (acknowledged and pending messages) was lost";
    type Asset = ConsumerOps;

    fn common(&self) -> &CommonSpec {
        &self.spec.common
    }

    fn asset_status(&self) -> Option<&AssetStatus> {
        self.status.as_ref()
    }

    fn asset_id(&self) -> ConsumerId {
        ConsumerId {
            stream: self.spec.stream_name.clone(),
            name: self.spec.durable_name.clone(),
        }
    }

    fn desired(
        &self,
        owner: &Owner,
        stream: Option<&StreamConfig>,
    ) -> Result<ConsumerConfig, InvalidSpec> {
        let fallback = StreamConfig::default();
        consumer_config::desired(&self.spec, stream.unwrap_or(&fallback), owner)
    }

    fn desired_pause(&self) -> Option<String> {
        consumer_config::desired_pause(&self.spec)
    }
}
