//! O_DIRECT appender for the active segment of one partition.
//!
//! Owned by the shard that owns the partition; never shared across threads.
//!
//! Appends are copied once into 4 KiB-aligned DMA chunks (the only copy on the
//! write path). A flush detaches the filled chunks and writes them with
//! O_DIRECT; the partially filled last 4 KiB block is written zero-padded and
//! also carried into the next pending chunk, so the next flush rewrites that
//! block with more data (the file's logical end is tracked here, not by its
//! size). Only one flush runs at a time per segment: overlapping writes of the
//! same tail block could complete out of order and lose data.
//!
//! Segments are preallocated with `fallocate` in growing steps so that appends
//! rarely change file metadata, which keeps `fdatasync` cheap.

use glommio::io::{DmaBuffer, DmaFile, OpenOptions};
use std::path::Path;
use std::rc::Rc;

/// Alignment of every O_DIRECT write position and length.
pub const BLOCK: u64 = 4096;

fn align_down(v: u64) -> u64 {
    v & !(BLOCK - 1)
}

fn align_up(v: u64) -> u64 {
    (v + BLOCK - 1) & !(BLOCK - 1)
}

/// Writes detached from a [`SegmentWriter`] by [`SegmentWriter::take_flush`].
pub struct FlushJob {
    writes: Vec<(u64, DmaBuffer)>,
    preallocate_to: Option<u64>,
    /// Logical end of the segment once these writes complete.
    pub logical_end: u64,
}

/// The appender of one active segment. See the module docs.
pub struct SegmentWriter {
    file: Rc<DmaFile>,
    chunk_bytes: usize,
    /// Aligned file position of `pending[0]`'s first byte.
    pending_start: u64,
    pending: Vec<DmaBuffer>,
    /// Bytes used in the last pending chunk.
    last_fill: usize,
    logical_end: u64,
    written_end: u64,
    allocated: u64,
    prealloc_step: u64,
    prealloc_step_max: u64,
    /// Preallocation never goes past this size (the segment's roll size), so
    /// small segments do not reserve large steps.
    prealloc_limit: u64,
}

impl SegmentWriter {
    /// Creates a new, empty segment file (fails if it exists).
    pub async fn create(
        path: &Path,
        chunk_bytes: usize,
        prealloc_min: u64,
        prealloc_max: u64,
    ) -> std::io::Result<SegmentWriter> {
        let file = OpenOptions::new()
            .create_new(true)
            .read(true)
            .write(true)
            .dma_open(path)
            .await
            .map_err(std::io::Error::from)?;
        Ok(Self::with_file(Rc::new(file), 0, 0, chunk_bytes, prealloc_min, prealloc_max))
    }

    /// Opens an existing segment to append after `logical_end` (recovered).
    pub async fn open(
        path: &Path,
        logical_end: u64,
        chunk_bytes: usize,
        prealloc_min: u64,
        prealloc_max: u64,
    ) -> std::io::Result<SegmentWriter> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .dma_open(path)
            .await
            .map_err(std::io::Error::from)?;
        let allocated = file.file_size().await.map_err(std::io::Error::from)?;
        let mut writer = Self::with_file(
            Rc::new(file),
            logical_end,
            allocated.max(logical_end),
            chunk_bytes,
            prealloc_min,
            prealloc_max,
        );
        // Carry the partial tail block so the next write rewrites it whole.
        let tail_start = align_down(logical_end);
        let tail_len = (logical_end - tail_start) as usize;
        if tail_len > 0 {
            let block = writer
                .file
                .read_at_aligned(tail_start, BLOCK as usize)
                .await
                .map_err(std::io::Error::from)?;
            if block.len() < tail_len {
                return Err(std::io::Error::other("segment shorter than its recovered end"));
            }
            let mut chunk = writer.file.alloc_dma_buffer(writer.chunk_bytes);
            chunk.as_bytes_mut()[..tail_len].copy_from_slice(&block[..tail_len]);
            writer.pending.push(chunk);
            writer.last_fill = tail_len;
        }
        writer.pending_start = tail_start;
        Ok(writer)
    }

    fn with_file(
        file: Rc<DmaFile>,
        logical_end: u64,
        allocated: u64,
        chunk_bytes: usize,
        prealloc_min: u64,
        prealloc_max: u64,
    ) -> SegmentWriter {
        assert!((chunk_bytes as u64).is_multiple_of(BLOCK) && chunk_bytes > 0);
        SegmentWriter {
            file,
            chunk_bytes,
            pending_start: align_down(logical_end),
            pending: Vec::new(),
            last_fill: 0,
            logical_end,
            written_end: logical_end,
            allocated,
            prealloc_step: prealloc_min.max(BLOCK),
            prealloc_step_max: prealloc_max.max(prealloc_min),
            prealloc_limit: u64::MAX,
        }
    }

    /// Caps preallocation at `bytes` (rounded up to a block).
    pub fn set_preallocate_limit(&mut self, bytes: u64) {
        self.prealloc_limit = align_up(bytes.max(BLOCK));
    }

    pub fn file(&self) -> &Rc<DmaFile> {
        &self.file
    }

    /// Bytes appended to the segment (its logical size).
    pub fn logical_end(&self) -> u64 {
        self.logical_end
    }

    /// Bytes whose O_DIRECT write has completed.
    pub fn written_end(&self) -> u64 {
        self.written_end
    }

    /// Bytes appended but not yet written.
    pub fn unwritten_bytes(&self) -> u64 {
        self.logical_end - self.written_end
    }

    /// Copies `data` to the end of the segment's pending chunks.
    pub fn append(&mut self, mut data: &[u8]) {
        self.logical_end += data.len() as u64;
        while !data.is_empty() {
            if self.pending.is_empty() || self.last_fill == self.chunk_bytes {
                self.pending.push(self.file.alloc_dma_buffer(self.chunk_bytes));
                self.last_fill = 0;
            }
            let chunk = self.pending.last_mut().expect("a chunk");
            let n = (self.chunk_bytes - self.last_fill).min(data.len());
            chunk.as_bytes_mut()[self.last_fill..self.last_fill + n].copy_from_slice(&data[..n]);
            self.last_fill += n;
            data = &data[n..];
        }
    }

    /// Detaches everything appended since the last flush as a [`FlushJob`],
    /// or `None` when nothing is pending. The caller runs the job with
    /// [`run_flush`] and then calls [`SegmentWriter::flush_done`]; it must not
    /// start another job before that.
    pub fn take_flush(&mut self) -> Option<FlushJob> {
        let pending_end = self.pending_start
            + (self.pending.len().saturating_sub(1) * self.chunk_bytes + self.last_fill) as u64;
        assert_eq!(pending_end, self.logical_end, "pending chunks must end at the logical end");
        if self.logical_end == self.written_end || self.pending.is_empty() {
            return None;
        }
        let chunks = std::mem::take(&mut self.pending);
        let count = chunks.len();
        let mut writes = Vec::with_capacity(count);
        let mut pos = self.pending_start;
        let tail_start = align_down(self.logical_end);
        let tail_len = (self.logical_end - tail_start) as usize;
        let mut carried: Option<DmaBuffer> = None;
        for (i, mut chunk) in chunks.into_iter().enumerate() {
            let fill = if i + 1 == count { self.last_fill } else { self.chunk_bytes };
            if i + 1 == count {
                let padded = align_up(fill as u64) as usize;
                chunk.as_bytes_mut()[fill..padded].fill(0);
                chunk.trim_to_size(padded);
                if tail_len > 0 {
                    // The partial block is rewritten by the next flush.
                    let mut next = self.file.alloc_dma_buffer(self.chunk_bytes);
                    let from = fill - tail_len;
                    next.as_bytes_mut()[..tail_len].copy_from_slice(&chunk.as_bytes()[from..fill]);
                    carried = Some(next);
                }
            }
            let len = chunk.len() as u64;
            writes.push((pos, chunk));
            pos += len;
        }
        let needed = pos;
        let preallocate_to = if needed > self.allocated {
            let target = (self.allocated + self.prealloc_step).min(self.prealloc_limit).max(needed);
            self.prealloc_step = (self.prealloc_step * 2).min(self.prealloc_step_max);
            self.allocated = target;
            Some(target)
        } else {
            None
        };
        self.pending_start = tail_start;
        match carried {
            Some(chunk) => {
                self.pending.push(chunk);
                self.last_fill = tail_len;
            }
            None => self.last_fill = 0,
        }
        Some(FlushJob { writes, preallocate_to, logical_end: self.logical_end })
    }

    /// Records that a job's writes completed.
    pub fn flush_done(&mut self, logical_end: u64) {
        assert!(logical_end >= self.written_end && logical_end <= self.logical_end);
        self.written_end = logical_end;
    }

    /// Writes everything pending, gives back the preallocated space past the
    /// last block and makes the segment durable: used when a segment is sealed
    /// (roll).
    ///
    /// The file is cut at the 4 KiB boundary after its last batch, not at the
    /// batch's end: cutting inside a block makes ext4 zero the rest of it,
    /// and since O_DIRECT left the block out of the page cache, it reads the
    /// block from the device first, on the shard thread (a traced roll did
    /// exactly that: one 4 KiB read per roll). The zeros after the last
    /// batch are what recovery and reads already stop at (zero fill).
    pub async fn seal(&mut self) -> std::io::Result<()> {
        if let Some(job) = self.take_flush() {
            let end = run_flush(&self.file, job).await?;
            self.flush_done(end);
        }
        let cut = align_up(self.logical_end);
        if self.allocated != cut {
            self.file.truncate(cut).await.map_err(std::io::Error::from)?;
            self.allocated = cut;
        }
        self.file.fdatasync().await.map_err(std::io::Error::from)?;
        Ok(())
    }
}

/// Runs a flush job's writes (disjoint, so issued together). Returns the
/// logical end the segment reaches once they are on the device.
pub async fn run_flush(file: &DmaFile, job: FlushJob) -> std::io::Result<u64> {
    if let Some(size) = job.preallocate_to {
        file.pre_allocate(size, false).await.map_err(std::io::Error::from)?;
    }
    let writes = job.writes.into_iter().map(|(pos, buf)| async move {
        let len = buf.len();
        let n = file.write_at(buf, pos).await.map_err(std::io::Error::from)?;
        if n != len {
            return Err(std::io::Error::other(format!("short O_DIRECT write: {n} of {len} bytes")));
        }
        Ok(())
    });
    futures::future::try_join_all(writes).await?;
    Ok(job.logical_end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rt::{dma_probe, run_local};

    async fn read_all(path: &Path) -> Vec<u8> {
        std::fs::read(path).expect("read back")
    }

    #[test]
    fn appends_flushes_and_rewrites_partial_tail_block() {
        let dir = tempfile::tempdir().unwrap();
        run_local(async {
            dma_probe(dir.path(), 0).await.unwrap();
            let path = dir.path().join("00000000000000000000.log");
            let mut w = SegmentWriter::create(&path, 8192, 4096, 65536).await.unwrap();
            let mut expect = Vec::new();
            for round in 0..20u32 {
                let data: Vec<u8> = (0..(round * 777 + 13)).map(|i| (i + round) as u8).collect();
                w.append(&data);
                expect.extend_from_slice(&data);
                if round % 3 == 0 {
                    let job = w.take_flush().unwrap();
                    let end = run_flush(w.file(), job).await.unwrap();
                    w.flush_done(end);
                    assert_eq!(w.written_end(), expect.len() as u64);
                }
            }
            w.seal().await.unwrap();
            let on_disk = read_all(&path).await;
            // Cut at the block boundary after the data: zeros, no more.
            assert_eq!(on_disk.len() as u64, align_up(expect.len() as u64));
            assert!(
                on_disk[..expect.len()] == expect,
                "segment bytes differ from what was appended"
            );
            assert!(on_disk[expect.len()..].iter().all(|b| *b == 0));
        });
    }

    #[test]
    fn reopen_continues_after_partial_block() {
        let dir = tempfile::tempdir().unwrap();
        run_local(async {
            dma_probe(dir.path(), 0).await.unwrap();
            let path = dir.path().join("seg.log");
            let mut w = SegmentWriter::create(&path, 4096, 4096, 8192).await.unwrap();
            w.append(&[1u8; 5000]);
            let job = w.take_flush().unwrap();
            let end = run_flush(w.file(), job).await.unwrap();
            w.flush_done(end);
            drop(w);
            // Simulate a crash: the file keeps its padding and preallocation.
            let mut w = SegmentWriter::open(&path, 5000, 4096, 4096, 8192).await.unwrap();
            w.append(&[2u8; 3000]);
            w.seal().await.unwrap();
            let on_disk = read_all(&path).await;
            assert_eq!(on_disk.len(), 8192);
            assert!(on_disk[..5000].iter().all(|b| *b == 1));
            assert!(on_disk[5000..8000].iter().all(|b| *b == 2));
            assert!(on_disk[8000..].iter().all(|b| *b == 0));
        });
    }
}
