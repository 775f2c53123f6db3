//! How [`OpendalStore`] writes: multipart uploads of large objects, and the options of every
//! write.

use super::OpendalStore;
#[cfg(any(feature = "s3", feature = "gcs", feature = "azblob"))]
use crate::runtime::runtime;
#[cfg(any(feature = "s3", feature = "gcs", feature = "azblob"))]
use ckpt_core::Result;
use opendal::options::WriteOptions;

impl OpendalStore {
    /// Uploads `parts` (one after another) to `path` as a multipart upload of
    /// `up.chunk_size`-byte parts, `up.concurrency` at a time, aborting the upload (so no parts
    /// are left behind) when a part or the completion fails. Holds about
    /// `chunk_size * (concurrency + 1)` bytes of copies.
    #[cfg(any(feature = "s3", feature = "gcs", feature = "azblob"))]
    pub(super) fn write_multipart(
        &self,
        path: &str,
        parts: &[&[u8]],
        up: crate::UploadOptions,
    ) -> Result<()> {
        let op = self.ops.async_op.clone();
        let rt = runtime()?;
        let uploaded: opendal::Result<()> = rt.block_on(async move {
            let mut w = op
                .writer_with(path)
                .content_type("application/octet-stream")
                .chunk(up.chunk_size)
                .concurrent(up.concurrency)
                .await?;
            for part in parts.iter().flat_map(|p| p.chunks(up.chunk_size)) {
                if let Err(e) = w.write(part.to_vec()).await {
                    let _ = w.abort().await;
                    return Err(e);
                }
            }
            if let Err(e) = w.close().await {
                let _ = w.abort().await;
                return Err(e);
            }
            Ok(())
        });
        uploaded.map_err(|e| self.err(e, "multipart upload", path))
    }

    /// The options of every write: object stores get `Content-Type: application/octet-stream`
    /// (what S3 and GCS assume anyway; GCS emulators otherwise record a null content type, which
    /// opendal then fails to parse).
    pub(super) fn write_options(&self) -> WriteOptions {
        #[cfg(any(feature = "s3", feature = "gcs", feature = "azblob"))]
        if self.backend.object().is_some() {
            return WriteOptions {
                content_type: Some("application/octet-stream".to_string()),
                ..Default::default()
            };
        }
        WriteOptions::default()
    }
}
