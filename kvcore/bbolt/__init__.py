"""bbolt (etcd's backend database) files: a streaming writer and a reader.

The format, as bbolt v1.3 lays it out (little-endian throughout; page size 4096 here):

  page header (16 bytes)   id u64 | flags u16 | count u16 | overflow u32
      flags: 0x01 branch, 0x02 leaf, 0x04 meta, 0x10 freelist. A page whose content
      exceeds one page spans 1 + overflow consecutive pages.
  pages 0 and 1: meta      header, then magic u32 0xED0CDAED | version u32 2 |
      page_size u32 | flags u32 | root bucket (root pgid u64, sequence u64) |
      freelist pgid u64 | pgid u64 (high-water mark: pages in the file) | txid u64 |
      checksum u64 (FNV-1a 64 over the 56 bytes before it). A reader takes the valid
      meta with the higher txid.
  freelist page            header (count = ids; 0xFFFF means the first u64 holds the
      count), then sorted free page ids u64. etcd writes none (meta freelist =
      0xFFFF_FFFF_FFFF_FFFF, "NoFreelistSync"); we write an empty one.
  leaf page                header, count elements of flags u32 | pos u32 | ksize u32 |
      vsize u32, then the keys and values; pos counts from the element's own start.
      Element flag 0x01: the value is a bucket.
  branch page              header, count elements of pos u32 | ksize u32 | pgid u64;
      each key is the first key of the child page.
  bucket value             root pgid u64 | sequence u64; root 0 means an inline bucket:
      a leaf page (header + elements) follows in the value itself.

The root bucket (meta's root) holds the top-level buckets. Keys in a page and across
pages are in byte order; every page below the high-water mark is reachable from the
meta or listed as free (what `bbolt check` verifies).

``Writer`` builds the B+tree bottom-up from sorted items, one page at a time: memory is
one page per tree level, whatever the database size. ``Reader`` walks a file through
mmap.
"""
from kvcore.bbolt.format import InvalidDatabase, PAGE_SIZE
from kvcore.bbolt.reader import Reader
from kvcore.bbolt.writer import Writer

__all__ = ["Writer", "Reader", "InvalidDatabase", "PAGE_SIZE"]
