//! The Stream kind.

use crate::api::common::{AssetStatus, CommonSpec};
use crate::api::stream::Stream;
use crate::jetstream::asset::StreamOps;
use crate::jetstream::mapping::InvalidSpec;
use crate::jetstream::owner::Owner;
use crate::jetstream::stream_config;
use crate::jetstream::wire::StreamConfig;

use super::kinds::Managed;

impl Managed for Stream {
    const NOUN: &'static str = "stream";
    type Asset = StreamOps;

    fn common(&self) -> &CommonSpec {
        &self.spec.common
    }

    fn asset_status(&self) -> Option<&AssetStatus> {
        self.status.as_ref()
    }

    fn asset_id(&self) -> String {
        self.spec.name.clone()
    }

    fn origin(&self) -> Option<String> {
        stream_config::mirror_origin(&self.spec)
    }

    fn desired(
        &self,
        owner: &Owner,
        origin: Option<&StreamConfig>,
    ) -> Result<StreamConfig, InvalidSpec> {
        let mut c = stream_config::desired(&self.spec, owner)?;
        if let Some(o) = origin {
            stream_config::inherit_from_origin(&mut c, self.spec.mirror_direct, o);
        }
        Ok(c)
    }
}
