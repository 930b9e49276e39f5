//! Images: what an image contributes to its containers, and pulls.

use super::{describe, Docker, ImageDefaults};
use crate::error;
use anyhow::Result;
use bollard::image::CreateImageOptions;
use futures_util::StreamExt;
use std::time::Duration;

impl Docker {
    pub async fn image_present(&self, image: &str) -> Result<bool> {
        Ok(self.image_defaults(image).await?.is_some())
    }

    /// The env, command and labels an image gives its containers; `None` when the image is
    /// not on the host.
    pub async fn image_defaults(&self, image: &str) -> Result<Option<ImageDefaults>> {
        let found = self
            .call_opt(
                || format!("inspect image {image}"),
                self.api.inspect_image(image),
            )
            .await?;
        Ok(found.map(|i| {
            let config = i.config.unwrap_or_default();
            ImageDefaults {
                env: config.env.unwrap_or_default(),
                cmd: config.cmd,
                labels: config.labels.unwrap_or_default(),
            }
        }))
    }

    /// Pulls `image`, bounded by `limit`. Any failure is an environment error naming it.
    pub async fn pull(&self, image: &str, limit: Duration) -> Result<()> {
        let mut stream = self.api.create_image(
            Some(CreateImageOptions {
                from_image: image.to_string(),
                ..Default::default()
            }),
            None,
            None,
        );
        let pulled = async {
            while let Some(item) = stream.next().await {
                item?;
            }
            Ok(())
        };
        let what = || format!("pull {image} (it is not on the Docker host)");
        self.call_within(&what, limit, pulled).await?.map_err(|e| {
            error::environment(format!(
                "image {image} is not on the Docker host and pulling it failed: {}. Build or load it there, or check the name and registry access",
                describe(&e)
            ))
        })
    }
}
