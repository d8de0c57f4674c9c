//! The KeyValue and ObjectStore kinds on the shared engine: both are streams underneath.

use crate::api::common::{AssetStatus, CommonSpec};
use crate::api::keyvalue::KeyValue;
use crate::api::objectstore::ObjectStore;
use crate::jetstream::bucket_config;
use crate::jetstream::owner::Owner;
use crate::jetstream::stream_config::InvalidSpec;

use super::engine::{Desired, Managed};
use super::registry::AssetRef;

impl Managed for KeyValue {
    const KIND: &'static str = "KeyValue";
    const FINALIZER: &'static str = "kv.nats.io/finalizer";
    const NOUN: &'static str = "key-value bucket";
    const LOST_ON_RECREATE: &'static str = "the values it held are gone";

    fn common(&self) -> &CommonSpec {
        &self.spec.common
    }

    fn asset_status(&self) -> Option<&AssetStatus> {
        self.status.as_ref()
    }

    fn asset(&self) -> AssetRef {
        AssetRef::Stream(bucket_config::kv_stream_name(&self.spec.bucket))
    }

    fn desired(&self, owner: &Owner) -> Result<Desired, InvalidSpec> {
        bucket_config::kv_stream(&self.spec, owner).map(|c| Desired::Stream(Box::new(c)))
    }
}

impl Managed for ObjectStore {
    const KIND: &'static str = "ObjectStore";
    const FINALIZER: &'static str = "objectstore.nats.io/finalizer";
    const NOUN: &'static str = "object store";
    const LOST_ON_RECREATE: &'static str = "the objects it held are gone";

    fn common(&self) -> &CommonSpec {
        &self.spec.common
    }

    fn asset_status(&self) -> Option<&AssetStatus> {
        self.status.as_ref()
    }

    fn asset(&self) -> AssetRef {
        AssetRef::Stream(bucket_config::obj_stream_name(&self.spec.bucket))
    }

    fn desired(&self, owner: &Owner) -> Result<Desired, InvalidSpec> {
        bucket_config::obj_stream(&self.spec, owner).map(|c| Desired::Stream(Box::new(c)))
    }
}
