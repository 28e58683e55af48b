//! The thin module around glommio: executor start-up, and the DMA probe that
//! works around glommio 0.9.0's iopoll misdetection.
//!
//! glommio 0.9.0 probes polled I/O support by reading a fresh empty file; on
//! virtio disks it wrongly concludes the device supports iopoll and every later
//! DMA read fails with EOPNOTSUPP (writes still succeed, so a node could write
//! a log it cannot read back). Reading a non-empty file first makes the probe
//! see a real read; [`dma_probe`] must run at the start of every executor
//! thread, before any other DMA file is opened on that device.

use glommio::io::DmaFile;
use std::path::Path;

/// Writes a small file with std, opens it as a `DmaFile` and reads it back.
/// Fails if the DMA read does not return what was written.
pub async fn dma_probe(dir: &Path, shard: usize) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!(".weir-dma-probe-{shard}"));
    let pattern: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&path, &pattern)?;
    let file = DmaFile::open(&path).await.map_err(|e| anyhow::anyhow!("DMA open probe: {e}"))?;
    let read = file.read_at_aligned(0, 4096).await;
    let _ = file.close().await;
    let _ = std::fs::remove_file(&path);
    let read = read.map_err(|e| anyhow::anyhow!("DMA read probe on {}: {e}", dir.display()))?;
    anyhow::ensure!(
        read.len() == 4096 && read[..] == pattern[..],
        "DMA read probe on {} returned wrong data",
        dir.display()
    );
    Ok(())
}

/// Runs blocking filesystem work (small files written with their syncs,
/// unlinks) on the executor's blocking thread, so the shard goes on serving
/// its other partitions meanwhile. Must be called on an executor thread.
pub async fn off_shard<R, F>(f: F) -> R
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    glommio::executor().spawn_blocking(f).await
}

/// Runs `f` on a fresh single glommio executor on this thread (tests, tools).
pub fn run_local<T, F>(f: F) -> T
where
    F: std::future::Future<Output = T>,
{
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .make()
        .expect("glommio executor")
        .run(f)
}
