//! The paged KV cache of one rank, and the block allocator that hands out its
//! pages.
//!
//! Keys and values live in fixed-size blocks of `block_size` positions. A
//! sequence's [`BlockTable`] lists its blocks in order: position `p` is slot
//! `p % block_size` of block `table[p / block_size]`. Blocks are only ever
//! written by the sequence that owns them, so sequences join and leave a batch
//! without moving anyone's cache.
//!
//! Entries are f32: the cache costs `2 * layers * kv_heads * head_dim * 4`
//! bytes per position, and keeps attention exact with respect to the reference.

/// Block ids of one sequence, in position order.
pub type BlockTable = Vec<u32>;

/// A block table that does not cover what a step needs.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    #[error("position {pos} needs block {index} of the block table, which has only {len} blocks")]
    TableTooShort {
        pos: usize,
        index: usize,
        len: usize,
    },
    #[error("block id {block} is outside the KV cache of {num_blocks} blocks")]
    BlockOutOfRange { block: u32, num_blocks: usize },
}

/// Keys and values of one layer, each `[num_blocks, block_size, kv_heads, head_dim]`, f32.
#[derive(Debug)]
struct LayerCache {
    k: Vec<f32>,
    v: Vec<f32>,
}

/// One rank's KV cache for all layers.
#[derive(Debug)]
pub struct KvCache {
    block_size: usize,
    num_blocks: usize,
    /// `kv_heads * head_dim`: floats per position per layer, for keys or values.
    row: usize,
    layers: Vec<LayerCache>,
}

impl KvCache {
    /// A zeroed cache. Pages are committed lazily by the OS as blocks are used.
    pub fn new(
        num_layers: usize,
        num_blocks: usize,
        block_size: usize,
        kv_heads: usize,
        head_dim: usize,
    ) -> Self {
        let row = kv_heads * head_dim;
        let len = num_blocks * block_size * row;
        let layers = (0..num_layers)
            .map(|_| LayerCache {
                k: vec![0.0; len],
                v: vec![0.0; len],
            })
            .collect();
        Self {
            block_size,
            num_blocks,
            row,
            layers,
        }
    }

    /// Positions per block.
    pub fn block_size(&self) -> usize {
        self.block_size
    }

    /// Blocks in the cache.
    pub fn num_blocks(&self) -> usize {
        self.num_blocks
    }

    /// Bytes one position takes across all layers (keys and values).
    pub fn bytes_per_position(&self) -> usize {
        2 * self.layers.len() * self.row * 4
    }

    /// Checks that `table` covers positions `0..end` with valid block ids.
    pub fn check(&self, table: &[u32], end: usize) -> Result<(), KvError> {
        if end == 0 {
            return Ok(());
        }
        let needed = (end - 1) / self.block_size + 1;
        if table.len() < needed {
            return Err(KvError::TableTooShort {
                pos: end - 1,
                index: needed - 1,
                len: table.len(),
            });
        }
        match table[..needed]
            .iter()
            .find(|&&b| b as usize >= self.num_blocks)
        {
            Some(&block) => Err(KvError::BlockOutOfRange {
                block,
                num_blocks: self.num_blocks,
            }),
            None => Ok(()),
        }
    }

    /// Row offset of position `pos`; the table must have passed [`KvCache::check`].
    fn offset(&self, table: &[u32], pos: usize) -> usize {
        let block = table[pos / self.block_size] as usize;
        (block * self.block_size + pos % self.block_size) * self.row
    }

    /// Stores the key and value rows (`[kv_heads * head_dim]` each) of `pos`.
    pub fn write(&mut self, layer: usize, table: &[u32], pos: usize, k: &[f32], v: &[f32]) {
        let at = self.offset(table, pos);
        let cache = &mut self.layers[layer];
        cache.k[at..at + self.row].copy_from_slice(k);
        cache.v[at..at + self.row].copy_from_slice(v);
    }

    /// The key and value rows (`[kv_heads * head_dim]` each) of `pos`.
    pub fn read(&self, layer: usize, table: &[u32], pos: usize) -> (&[f32], &[f32]) {
        let at = self.offset(table, pos);
        let cache = &self.layers[layer];
        (&cache.k[at..at + self.row], &cache.v[at..at + self.row])
    }
}

/// Hands out KV cache blocks. Owned by whoever schedules sequences.
#[derive(Debug)]
pub struct BlockAllocator {
    block_size: usize,
    free: Vec<u32>,
    total: usize,
}

impl BlockAllocator {
    /// An allocator over blocks `0..num_blocks`.
    pub fn new(num_blocks: usize, block_size: usize) -> Self {
        let free = (0..num_blocks as u32).rev().collect();
        Self {
            block_size,
            free,
            total: num_blocks,
        }
    }

    /// Positions per block.
    pub fn block_size(&self) -> usize {
        self.block_size
    }

    /// Blocks needed to hold `positions` positions.
    pub fn blocks_for(&self, positions: usize) -> usize {
        positions.div_ceil(self.block_size)
    }

    /// Grows `table` to cover `positions`; false (and `table` unchanged) when
    /// there are not enough free blocks.
    pub fn grow(&mut self, table: &mut BlockTable, positions: usize) -> bool {
        let needed = self.blocks_for(positions).saturating_sub(table.len());
        if needed > self.free.len() {
            return false;
        }
        let at = self.free.len() - needed;
        table.extend(self.free.drain(at..).rev());
        true
    }

    /// Returns a table's blocks to the pool.
    pub fn release(&mut self, table: &mut BlockTable) {
        self.free.append(table);
    }

    /// Blocks currently free.
    pub fn free_blocks(&self) -> usize {
        self.free.len()
    }

    /// Blocks in the pool.
    pub fn total_blocks(&self) -> usize {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocator_grows_and_releases() {
        let mut a = BlockAllocator::new(4, 16);
        let mut t = BlockTable::new();
        assert!(a.grow(&mut t, 17));
        assert_eq!(t.len(), 2);
        assert!(!a.grow(&mut t, 100));
        assert_eq!(t.len(), 2);
        a.release(&mut t);
        assert_eq!(a.free_blocks(), 4);
        assert!(t.is_empty());
    }

    #[test]
    fn cache_checks_tables_and_round_trips() -> Result<(), KvError> {
        let mut c = KvCache::new(1, 2, 4, 1, 2);
        assert!(matches!(
            c.check(&[0], 5),
            Err(KvError::TableTooShort { .. })
        ));
        assert!(matches!(
            c.check(&[0, 7], 5),
            Err(KvError::BlockOutOfRange { block: 7, .. })
        ));
        c.check(&[1, 0], 5)?;
        c.write(0, &[1, 0], 4, &[1.0, 2.0], &[3.0, 4.0]);
        assert_eq!(c.read(0, &[1, 0], 4), (&[1.0, 2.0][..], &[3.0, 4.0][..]));
        assert_eq!(c.read(0, &[1, 0], 0), (&[0.0, 0.0][..], &[0.0, 0.0][..]));
        Ok(())
    }
}
