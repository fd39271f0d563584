"""Shared-memory segments: layout, naming, untracked create/attach, the sweep, the one writer.

Both sides import this package: the Runner's `SlotRing` and the seed writers write segments
(through `write`, the one writer), the SDK's `read_image_from_shared_memory` reads them. A
segment is a 64-byte header followed by the payload:

    offset size  field
    0      4     magic b"PVSM"
    4      2     layout version (1)
    6      1     encoding (0 raw, 1 jpeg, 2 png, 3 other Pillow-readable container)
    7      1     dtype code (raw payloads; see DTYPE_CODES)
    8      8     sequence number (0 while a write is in progress)
    16     4     height
    20     4     width
    24     4     channels
    28     4     owner pid (the process that created the segment and will unlink it)
    32     8     payload size in bytes
    40     4     flags (bit 0: retired, the owner unlinked it and will not write it again)
    44     20    reserved, zero

All integers little-endian. The payload starts at HEADER_SIZE (64, cache-line aligned).

Modules: `layout` (header codec, codes, naming), `mapping` (the segment as an OS object),
`sweep` (stale segments of dead owners), `write` (the commit protocol). This package re-exports
every name the single `segment` module offered.
"""

from .._process import pid_alive
from .layout import (
    DTYPE_CODES,
    DTYPES_BY_CODE,
    ENCODING_CODES,
    ENCODING_JPEG,
    ENCODING_NAMES,
    ENCODING_OTHER,
    ENCODING_PNG,
    ENCODING_RAW,
    FLAG_RETIRED,
    HEADER_SIZE,
    LAYOUT_VERSION,
    MAGIC,
    SEGMENT_PREFIX,
    SegmentHeader,
    dtype_code,
    is_retired,
    mark_retired,
    new_segment_name,
    owner_pid_from_name,
    payload_array,
    read_header,
    segment_name_for_id,
    set_sequence,
    write_header,
)
from .mapping import (
    attach_segment,
    attach_segment_readonly,
    close_quietly,
    create_segment,
    prefault,
    retire_and_unlink,
    unlink_segment,
)
from .sweep import (
    sweep_stale_segments,
)
from .write import (
    COLOR_SPACES,
    color_space_for,
    commit_raw,
    frame_geometry,
    frame_meta,
    open_raw,
    write_encoded,
    write_raw,
)

__all__ = [
    "COLOR_SPACES",
    "DTYPES_BY_CODE",
    "DTYPE_CODES",
    "ENCODING_CODES",
    "ENCODING_JPEG",
    "ENCODING_NAMES",
    "ENCODING_OTHER",
    "ENCODING_PNG",
    "ENCODING_RAW",
    "FLAG_RETIRED",
    "HEADER_SIZE",
    "LAYOUT_VERSION",
    "MAGIC",
    "SEGMENT_PREFIX",
    "SegmentHeader",
    "attach_segment",
    "attach_segment_readonly",
    "close_quietly",
    "color_space_for",
    "commit_raw",
    "create_segment",
    "dtype_code",
    "frame_geometry",
    "frame_meta",
    "is_retired",
    "mark_retired",
    "new_segment_name",
    "open_raw",
    "owner_pid_from_name",
    "payload_array",
    "pid_alive",
    "prefault",
    "read_header",
    "retire_and_unlink",
    "segment_name_for_id",
    "set_sequence",
    "sweep_stale_segments",
    "unlink_segment",
    "write_encoded",
    "write_header",
    "write_raw",
]
