//! The KeyValue and ObjectStore kinds: both are streams underneath.

use crate::api::common::{AssetStatus, CommonSpec};
use crate::api::keyvalue::KeyValue;
use crate::api::objectstore::ObjectStore;
use crate::jetstream::asset::StreamOps;
use crate::jetstream::bucket_config;
use crate::jetstream::mapping::InvalidSpec;
use crate::jetstream::owner::Owner;
use crate::jetstream::wire::StreamConfig;

use super::kinds::Managed;

impl Managed for KeyValue {
    const NOUN: &'static str = "key-value bucket";
    const LOST_ON_RECREATE: &'static str = "the values it held are gone";
    type Asset = StreamOps;

    fn common(&self) -> &CommonSpec {
        &self.spec.common
    }

    fn asset_status(&self) -> Option<&AssetStatus> {
        self.status.as_ref()
    }

    fn asset_id(&self) -> String {
        bucket_config::kv_stream_name(&self.spec.bucket)
    }

    fn desired(
        &self,
        owner: &Owner,
        _: Option<&StreamConfig>,
    ) -> Result<StreamConfig, InvalidSpec> {
        bucket_config::kv_stream(&self.spec, owner)
    }
}

impl Managed for ObjectStore {
    const NOUN: &'static str = "object store";
    const LOST_ON_RECREATE: &'static str = "the objects it held are gone";
    type Asset = StreamOps;

    fn common(&self) -> &CommonSpec {
        &self.spec.common
    }

    fn asset_status(&self) -> Option<&AssetStatus> {
        self.status.as_ref()
    }

    fn asset_id(&self) -> String {
        bucket_config::obj_stream_name(&self.spec.bucket)
    }

    fn desired(
        &self,
        owner: &Owner,
        _: Option<&StreamConfig>,
    ) -> Result<StreamConfig, InvalidSpec> {
        bucket_config::obj_stream(&self.spec, owner)
    }
}
