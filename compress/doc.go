// Package compress provides streaming compression and decompression with the
// codecs and file extensions of pgBackRest's compress-type option: none, gz,
// lz4, zst and bz2.
//
// Every type decompresses. Writers produce what pgBackRest's readers (and the
// gzip, lz4, zstd and bzip2 command-line tools) accept:
//
//   - gz: a single gzip member (RFC 1952), mtime 0 and OS 3 (Unix) as zlib
//     writes them, from github.com/klauspost/compress/gzip. Levels 0..9 have
//     zlib's meaning (0 stores, 1 fastest, 9 smallest); -1 is zlib's default,
//     6. The compressed bytes differ from zlib's, the decompressed ones do not.
//   - lz4: one LZ4 frame with 64 KiB blocks and a content checksum, as
//     pgBackRest's LZ4F preferences give, from github.com/pierrec/lz4/v4. Its
//     blocks are independent where pgBackRest's are linked; both are
//     standard and readers of either accept both. Levels follow LZ4F: at or
//     below 2 the fast compressor (pgBackRest's default 1, and its negative
//     "acceleration" levels), 3..12 the high-compression one, mapped onto
//     pierrec's Level1..Level9 (3 -> Level1, ..., 11 and 12 -> Level9).
//   - zst: one zstd frame without checksum or content size (like
//     ZSTD_compressStream), from github.com/klauspost/compress/zstd. Its four
//     encoder speeds cover zstd's levels as zstd.EncoderLevelFromZstd maps
//     them: below 3 (including negative levels) SpeedFastest, 3..5
//     SpeedDefault, 6..9 SpeedBetterCompression, 10..22
//     SpeedBestCompression. The window is 4 MiB (fastest) or 8 MiB.
//   - bz2: read-only, because no pure-Go bzip2 compressor is among the
//     project's modules; NewWriter returns ErrReadOnly. Decompression uses
//     the standard library's compress/bzip2.
//
// Level ranges and defaults are pgBackRest's (see Type.Levels and
// Type.DefaultLevel). Memory is bounded per stream: single-threaded encoders
// and decoders, 64 KiB lz4 blocks on write (at most 4 MiB, the format's
// maximum, on read), and a zstd decoder window limit of 128 MiB, the largest
// window zstd's level 22 uses.
//
// Readers report an empty or truncated compressed stream as an error
// wrapping io.ErrUnexpectedEOF, never as io.EOF after a partial result.
// Corrupt data is an error wherever the format can tell: gz, lz4 and bz2
// carry checksums, while zst frames as pgBackRest writes them do not, so a
// damaged zst object may decode to wrong bytes (the repository's SHA-1 checks
// catch that). Writers and readers can be reused
// with Reset (see Writer and Reader).
package compress
