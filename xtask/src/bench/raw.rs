//! Raw opendal baselines: the payload's bytes put as one object and got back with a plain
//! `opendal::blocking::Operator` (memory service, or S3 on the local server), no ckpt in between.

use super::payload::Payload;
use super::S3Env;
use std::sync::OnceLock;
use std::time::Instant;

/// The multi-thread runtime opendal's blocking operator needs (notes/dependencies.md G4).
fn runtime() -> Result<&'static tokio::runtime::Runtime, String> {
    static RT: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot build a tokio runtime: {e}"))
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// A plain opendal operator (blocking, and async for multipart uploads).
pub struct RawStore {
    op: opendal::blocking::Operator,
    async_op: opendal::Operator,
}

impl RawStore {
    /// Gets the object at `path` back as a `Vec` (timed), checks its size against the payload's,
    /// deletes it; seconds for the get.
    fn get_and_delete(&self, path: &str, p: &Payload) -> Result<f64, String> {
        let t = Instant::now();
        let data = self
            .op
            .read(path)
            .map_err(|e| format!("raw get {path}: {e}"))?
            .to_vec();
        let get = t.elapsed().as_secs_f64();
        if data.len() != p.bytes {
            return Err(format!(
                "raw get {path}: {} bytes, expected {}",
                data.len(),
                p.bytes
            ));
        }
        drop(data);
        self.op
            .delete(path)
            .map_err(|e| format!("raw delete {path}: {e}"))?;
        Ok(get)
    }

    fn new(async_op: opendal::Operator) -> Result<RawStore, String> {
        let rt = runtime()?;
        let _g = rt.enter();
        let op = opendal::blocking::Operator::new(async_op.clone()).map_err(|e| e.to_string())?;
        Ok(RawStore { op, async_op })
    }

    /// Uploads the payload's bytes to `path` as opendal's multipart writer does it with
    /// `chunk_size`-byte parts, `concurrency` in flight (what ckpt's object stores do above
    /// their multipart threshold), gets it back, deletes it; (seconds for put, for get).
    ///
    /// # Errors
    /// When a call fails or the object read back has the wrong size.
    pub fn multipart_put_get(
        &self,
        path: &str,
        p: &Payload,
        chunk_size: usize,
        concurrency: usize,
    ) -> Result<(f64, f64), String> {
        let t = Instant::now();
        let op = self.async_op.clone();
        let parts = p.parts();
        runtime()?
            .block_on(async {
                let mut w = op
                    .writer_with(path)
                    .chunk(chunk_size)
                    .concurrent(concurrency)
                    .await?;
                for piece in parts.iter().flat_map(|b| b.chunks(chunk_size)) {
                    w.write(piece.to_vec()).await?;
                }
                w.close().await.map(|_| ())
            })
            .map_err(|e| format!("raw multipart put {path}: {e}"))?;
        let put = t.elapsed().as_secs_f64();
        Ok((put, self.get_and_delete(path, p)?))
    }

    /// The memory service.
    ///
    /// # Errors
    /// When the operator cannot be built.
    pub fn memory() -> Result<RawStore, String> {
        let op = opendal::Operator::new(opendal::services::Memory::default())
            .map_err(|e| format!("opendal memory: {e}"))?;
        RawStore::new(op)
    }

    /// S3 on the local server, below `prefix` of the bench bucket.
    ///
    /// # Errors
    /// When the operator cannot be built.
    pub fn s3(s3: &S3Env, prefix: &str) -> Result<RawStore, String> {
        // opendal is built without its default HTTP transport: ckpt-storage installs its own
        // (reqwest + rustls/ring) once per process.
        ckpt_manager::storage::install_http_transport();
        let builder = opendal::services::S3::default()
            .endpoint(&s3.endpoint)
            .bucket(&s3.bucket)
            .region(&s3.region)
            .access_key_id(&s3.access_key)
            .secret_access_key(&s3.secret_key)
            .disable_config_load()
            .disable_ec2_metadata()
            .root(&format!("/{prefix}"));
        let op = opendal::Operator::new(builder).map_err(|e| format!("opendal s3: {e}"))?;
        RawStore::new(op)
    }

    /// Puts the payload's bytes as one object at `path` (one copy into an owned buffer, one
    /// write call), gets it back as a `Vec`, deletes it; (seconds for put, seconds for get).
    ///
    /// # Errors
    /// When a call fails or the object read back has the wrong size.
    pub fn put_get(&self, path: &str, p: &Payload) -> Result<(f64, f64), String> {
        let t = Instant::now();
        let mut buf = Vec::with_capacity(p.bytes);
        for part in p.parts() {
            buf.extend_from_slice(part);
        }
        self.op
            .write(path, buf)
            .map_err(|e| format!("raw put {path}: {e}"))?;
        let put = t.elapsed().as_secs_f64();
        Ok((put, self.get_and_delete(path, p)?))
    }
}
