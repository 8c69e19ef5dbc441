/* One run of the crash -> re-exec benchmark's child.
 *
 * Appends one fixed-width record "<start_ns> <exit_ns>\n" (CLOCK_MONOTONIC) to argv[1] with a
 * single O_APPEND write, then exits 1 so the supervisor restarts it. The restart latency is the
 * next record's start minus this record's exit. After argv[2] records it stops crashing and
 * waits for a signal instead, so the supervisor's restart loop ends by itself.
 * No stdio, no allocation: the less a run does, the less noise in the gap we measure. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define RECORD 42 /* "%020lld %020lld\n" */

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv) {
    long long start = now_ns();
    if (argc < 3) return 2;
    long limit = strtol(argv[2], NULL, 10);
    int fd = open(argv[1], O_WRONLY | O_APPEND | O_CREAT, 0644);
    if (fd < 0) return 3;
    struct stat st;
    if (fstat(fd, &st) == 0 && st.st_size / RECORD >= limit) {
        close(fd);
        for (;;) pause(); /* done: the benchmark stops the supervisor */
    }
    char buf[RECORD + 1];
    long long end = now_ns();
    snprintf(buf, sizeof buf, "%020lld %020lld\n", start, end);
    if (write(fd, buf, RECORD) != RECORD) return 4;
    _exit(1);
}
