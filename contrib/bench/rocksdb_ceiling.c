/*
 * rocksdb_ceiling.c - how many durable messages/s RocksDB itself takes on
 * this machine, without the store around it: the ceiling for src/queue.
 *
 *   rocksdb_ceiling DIR [N]
 *
 * One writer thread, default options plus create_if_missing, every write
 * a WriteBatch with the WAL synced (sync = 1), as the store thread writes
 * its group-commit rounds. Five runs, one line each, in messages/s:
 *
 *   - 1 message per synced batch, one 4 KiB value (a single synced put:
 *     the bound for a store that syncs every message on its own);
 *   - 64 messages per synced batch, K keys per message, K = 1, 4, 13, 22:
 *     key 0 is the 4 KiB body, keys 1..K-1 are 100-byte values (the shape
 *     of recipient records and due-index keys). 22 is the store's layout
 *     for a 4 KiB, 10-recipient message (envelope, body chunk, 10
 *     recipient records, 10 due keys; plus the counters, once a round),
 *     so the K = 22 line bounds what the store can reach with 64
 *     submitters per round; 13 is the layout with one due key per
 *     submission instead of one per recipient.
 *
 * Keys are big-endian message numbers (plus a big-endian key index), so
 * they sort in insertion order as the store's do. N messages per batched
 * run (default 100,000), N / 20 single puts. Each run gets a fresh
 * database under DIR (created if missing), destroyed afterwards.
 *
 * This is the only file outside src/queue that includes rocksdb/c.h, on
 * purpose: it measures the library, not the engine. Not a test and not
 * built by CMake: contrib/bench/ceiling.sh compiles and runs it.
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime, mkdir under -std=c11 */

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>

#include <rocksdb/c.h>

#define BODY_SIZE	4096
#define SMALL_SIZE	100

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
put_be(unsigned char *p, uint64_t v, int n)
{
	for (int i = n - 1; i >= 0; i--) {
		p[i] = (unsigned char)v;
		v >>= 8;
	}
}

static void
fail(const char *what, char *err)
{
	fprintf(stderr, "rocksdb_ceiling: %s: %s\n", what, err);
	free(err);
	exit(1);
}

/*
 * run - write n messages, batch messages per synced WriteBatch, keys keys
 * per message, into a fresh database at path; returns messages/s.
 */
static double
run(const char *path, long n, int batch, int keys, const char *body,
    const char *small)
{
	rocksdb_options_t *o = rocksdb_options_create();
	rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
	rocksdb_writebatch_t *b = rocksdb_writebatch_create();
	rocksdb_t *db;
	char *err = NULL;
	double t0, dt;

	rocksdb_options_set_create_if_missing(o, 1);
	rocksdb_writeoptions_set_sync(wo, 1);
	db = rocksdb_open(o, path, &err);
	if (err != NULL)
		fail(path, err);

	t0 = now();
	for (long i = 0; i < n;) {
		for (int j = 0; j < batch && i < n; j++, i++) {
			unsigned char k[12];

			put_be(k, (uint64_t)i, 8);
			rocksdb_writebatch_put(b, (char *)k, 8, body,
			    BODY_SIZE);
			for (int r = 1; r < keys; r++) {
				put_be(k + 8, (uint64_t)r, 4);
				rocksdb_writebatch_put(b, (char *)k, 12,
				    small, SMALL_SIZE);
			}
		}
		rocksdb_write(db, wo, b, &err);
		if (err != NULL)
			fail("write", err);
		rocksdb_writebatch_clear(b);
	}
	dt = now() - t0;

	rocksdb_close(db);
	rocksdb_destroy_db(o, path, &err);
	if (err != NULL)
		fail("destroy", err);
	rocksdb_writebatch_destroy(b);
	rocksdb_writeoptions_destroy(wo);
	rocksdb_options_destroy(o);
	return (double)n / dt;
}

static void
report(const char *dir, const char *name, long n, int batch, int keys,
    const char *body, const char *small)
{
	char path[4096];
	double rate;

	snprintf(path, sizeof path, "%s/%s", dir, name);
	rate = run(path, n, batch, keys, body, small);
	printf("rocksdb: %2d msg%s per synced batch, %2d key%s per msg:"
	    " %7.0f msgs/s  (%ld msgs, %.0f synced writes/s)\n", batch,
	    batch == 1 ? " " : "s", keys, keys == 1 ? " " : "s", rate, n,
	    rate / batch);
	fflush(stdout);
}

int
main(int argc, char **argv)
{
	static const int keys[] = { 1, 4, 13, 22 };
	char body[BODY_SIZE], small[SMALL_SIZE], name[32];
	long n = 100000;

	if (argc < 2 || argc > 3 || (argc == 3 && (n = atol(argv[2])) < 20)) {
		fprintf(stderr, "usage: rocksdb_ceiling DIR [N >= 20]\n");
		return 2;
	}
	if (mkdir(argv[1], 0700) != 0 && errno != EEXIST) {
		perror(argv[1]);
		return 1;
	}
	for (size_t i = 0; i < sizeof body; i++)
		body[i] = (char)('a' + i % 26);
	for (size_t i = 0; i < sizeof small; i++)
		small[i] = (char)('A' + i % 26);

	report(argv[1], "single", n / 20, 1, 1, body, small);
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
		snprintf(name, sizeof name, "batch64-k%d", keys[i]);
		report(argv[1], name, n, 64, keys[i], body, small);
	}
	return 0;
}
