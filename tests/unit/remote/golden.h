/* Golden bytes of a stripe server exchange, written down from the protocol's
 * definition (not produced by this code): a 4 MiB disk served without a
 * metadata file, stripe shift 11 (1 MiB stripes), every header
 * FETCHED|WRITTEN|HAS_SOURCE. */
#ifndef UBIBLK_TESTS_REMOTE_GOLDEN_H
#define UBIBLK_TESTS_REMOTE_GOLDEN_H

#include <stdint.h>

/* Client -> server. */
static const uint8_t golden_metadata_request[] = {0x00};
static const uint8_t golden_read_stripe_0_request[] = {0x01, 0, 0, 0, 0, 0, 0, 0, 0};
static const uint8_t golden_read_stripe_big_request[] = {0x01, 0xef, 0xcd, 0xab, 0x89,
							 0x67, 0x45, 0x23, 0x01};

/* Server -> client: 00, u64 516, magic "BDEV_UBI\0", version 1.0, shift 11,
 * 498 zero bytes, four headers 07. */
#define GOLDEN_METADATA_REPLY_BYTES (9 + 516)
static const uint8_t golden_metadata_reply[GOLDEN_METADATA_REPLY_BYTES] = {
    [0] = 0x00,
    [1] = 0x04,
    [2] = 0x02,
    [3] = 0x00,
    [4] = 0x00,
    [5] = 0x00,
    [6] = 0x00,
    [7] = 0x00,
    [8] = 0x00,
    [9] = 0x42,
    [10] = 0x44,
    [11] = 0x45,
    [12] = 0x56,
    [13] = 0x5F,
    [14] = 0x55,
    [15] = 0x42,
    [16] = 0x49,
    [17] = 0x00,
    [18] = 0x01,
    [19] = 0x00,
    [20] = 0x00,
    [21] = 0x00,
    [22] = 0x0B,
    /* [23] .. [520]: 498 zero bytes */
    [521] = 0x07,
    [522] = 0x07,
    [523] = 0x07,
    [524] = 0x07,
};

/* READ_STRIPE 0: 00, u64 1048576, then 1 MiB of data. */
static const uint8_t golden_read_stripe_reply_header[] = {0x00, 0x00, 0x00, 0x10, 0x00,
							  0x00, 0x00, 0x00, 0x00};

#endif
