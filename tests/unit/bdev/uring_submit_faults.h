/* Fault injection for the io_uring engine, linked into the tests that need
 * it (never into the product): this file's bdev_uring_enter replaces the
 * engine's weak one. While bdev_uring_fail_submits is non-zero, each io_uring
 * submit counts it down and fails with -EAGAIN as if the kernel were short of
 * memory; the SQEs stay queued, as after a real refusal. Atomic: a test
 * thread sets it, channel threads consume it. */
#ifndef UBIBLK_TEST_URING_SUBMIT_FAULTS_H
#define UBIBLK_TEST_URING_SUBMIT_FAULTS_H

extern unsigned bdev_uring_fail_submits;

#endif
