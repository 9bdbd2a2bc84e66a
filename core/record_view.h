/*
 * Records of stored or produced batches as struct skald_record_view
 * (include/skald/record.h): what plugins read through
 * host->records_foreach and what Lua hooks see.
 */
#ifndef SK_RECORD_VIEW_H
#define SK_RECORD_VIEW_H

#include "buf.h"
#include "skald/record.h"

/* Largest batch records_foreach decompresses. */
#define SK_RECORD_VIEW_MAX_INFLATE (64u << 20)

/*
 * Call fn for every record of the whole RecordBatch v2 batches in
 * p[0..len), in order; a partial batch at the end is ignored. Compressed
 * batches are decompressed into scratch (the caller's, reused; NULL uses
 * a temporary one). flags: SKALD_RECORDS_*. Returns 0, fn's non-zero
 * result, -EBADMSG (malformed batch or record, or a bad CRC when asked to
 * verify), -ENOTSUP (unknown codec) or -E2BIG (a batch larger than
 * SK_RECORD_VIEW_MAX_INFLATE once decompressed). Any thread.
 */
int sk_record_view_foreach(const void *p, size_t len, uint32_t flags,
			   struct sk_buf *scratch, skald_record_fn fn,
			   void *arg);

#endif
