/* The cipher over a caller's iovecs. Sectors lying inside one iovec are
 * handled in runs, in place; a sector straddling iovecs (front ends only
 * guarantee that the lengths add up to whole sectors) is gathered into the
 * channel's scratch sector and handled there. */
#include "crypto/crypt_internal.h"

#include "common/common.h"

#include <errno.h>
#include <string.h>

struct iov_cursor_pos {
	int index;
	size_t offset;
};

/* Moves past exhausted (and empty) iovecs; false at the end. */
static bool settle(const struct iovec *iov, int iovcnt, struct iov_cursor_pos *pos)
{
	while (pos->index < iovcnt && pos->offset >= iov[pos->index].iov_len) {
		pos->index++;
		pos->offset = 0;
	}
	return pos->index < iovcnt;
}

/* Copies `len` bytes between the iovecs at pos and buf, advancing pos;
 * false when the iovecs end first. */
static bool copy_iov(const struct iovec *iov, int iovcnt, struct iov_cursor_pos *pos, uint8_t *buf,
		     size_t len, bool to_iov)
{
	while (len) {
		if (!settle(iov, iovcnt, pos))
			return false;
		uint8_t *p = (uint8_t *)iov[pos->index].iov_base + pos->offset;
		size_t n = iov[pos->index].iov_len - pos->offset;
		if (n > len)
			n = len;
		if (to_iov)
			memcpy(p, buf, n);
		else
			memcpy(buf, p, n);
		buf += n;
		len -= n;
		pos->offset += n;
	}
	return true;
}

int crypt_iov_decrypt(struct crypt_channel *ch, uint64_t sector, const struct iovec *iov,
		      int iovcnt)
{
	struct iov_cursor_pos pos = {0, 0};
	while (settle(iov, iovcnt, &pos)) {
		uint8_t *p = (uint8_t *)iov[pos.index].iov_base + pos.offset;
		size_t whole = (iov[pos.index].iov_len - pos.offset) / SECTOR_SIZE;
		int rc;
		if (whole) {
			rc = xts_decrypt(ch->cipher, sector, p, p, whole);
			pos.offset += whole * SECTOR_SIZE;
			sector += whole;
		} else {
			struct iov_cursor_pos start = pos;
			if (!copy_iov(iov, iovcnt, &pos, ch->scratch, SECTOR_SIZE, false))
				return -EINVAL;
			rc = xts_decrypt(ch->cipher, sector, ch->scratch, ch->scratch, 1);
			copy_iov(iov, iovcnt, &start, ch->scratch, SECTOR_SIZE, true);
			sector++;
		}
		if (rc < 0)
			return rc;
	}
	return 0;
}

int crypt_iov_encrypt(struct crypt_channel *ch, struct crypt_request *req, uint64_t sector,
		      uint8_t *dst, size_t nsectors)
{
	if (req->op == CRYPT_OP_ZEROES) {
		/* From a zero page rather than in place in dst: the cipher's
		 * out-of-place path does not read the bounce page first. */
		static const uint8_t zeroes[CRYPT_PAGE_BYTES];
		int rc = 0;
		for (size_t done = 0; done < nsectors && rc == 0;) {
			size_t n = nsectors - done < CRYPT_PAGE_SECTORS ? nsectors - done
									: CRYPT_PAGE_SECTORS;
			rc = xts_encrypt_unfenced(ch->cipher, sector + done, zeroes,
						  dst + done * SECTOR_SIZE, n);
			done += n;
		}
		return rc;
	}
	struct iov_cursor_pos pos = {req->iov_index, req->iov_offset};
	int rc = 0;
	while (nsectors && rc == 0) {
		if (!settle(req->iov, req->iovcnt, &pos))
			return -EINVAL;
		const uint8_t *p = (const uint8_t *)req->iov[pos.index].iov_base + pos.offset;
		size_t whole = (req->iov[pos.index].iov_len - pos.offset) / SECTOR_SIZE;
		if (whole > nsectors)
			whole = nsectors;
		size_t done = whole ? whole : 1;
		if (whole) {
			rc = xts_encrypt_unfenced(ch->cipher, sector, p, dst, whole);
			pos.offset += whole * SECTOR_SIZE;
		} else {
			if (!copy_iov(req->iov, req->iovcnt, &pos, ch->scratch, SECTOR_SIZE, false))
				return -EINVAL;
			rc = xts_encrypt_unfenced(ch->cipher, sector, ch->scratch, dst, 1);
		}
		sector += done;
		dst += done * SECTOR_SIZE;
		nsectors -= done;
	}
	req->iov_index = pos.index;
	req->iov_offset = pos.offset;
	return rc;
}
