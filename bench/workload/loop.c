/* moat-bench's in-pod workload: times itself, so only the container's own cost is measured.
 *
 *   loop GETPID_N OPEN_N FORK_N [FILE [FILE2]]
 *
 * Prints one line per loop: "<name> <iterations> <wall ns per iteration> <cpu ns per iteration>".
 * Each loop runs in CHUNKS chunks; the wall figure is the mean over all iterations, the cpu
 * figure the cheapest chunk's. CPU time (this process's, plus the children's for
 * fork_exec_true) leaves out the time the loop waited for a CPU, and the cheapest chunk leaves
 * out most of what other work on the host costs it (cache and TLB pressure, interrupts,
 * a hypervisor's steal), so the figure stays comparable on a busy host.
 *   getpid          syscall(SYS_getpid) (glibc caches nothing here: a real syscall each time)
 *   open_read_close openat + read (up to 4 KiB) + close of FILE (default /etc/passwd)
 *   open_read_close_2  the same on FILE2, when given (a file on another mount: a volume)
 *   fork_exec_true  fork + execve("/bin/true") + waitpid
 * Built with `gcc -static` so it runs in any image. Exits non-zero on any failure.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double clock_ns(clockid_t clock)
{
	struct timespec ts;
	if (clock_gettime(clock, &ts) != 0) {
		perror("clock_gettime");
		exit(2);
	}
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static double now_ns(void)
{
	return clock_ns(CLOCK_MONOTONIC);
}

/* CPU time of this process and of its waited-for children. */
static double cpu_ns(void)
{
	struct rusage ru;
	if (getrusage(RUSAGE_CHILDREN, &ru) != 0) {
		perror("getrusage");
		exit(2);
	}
	double children = ((double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec) * 1e9 +
			  ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) * 1e3;
	return clock_ns(CLOCK_PROCESS_CPUTIME_ID) + children;
}

#define CHUNKS 10

/* Runs `body` n times in CHUNKS chunks; prints the line for `name`. */
static void timed(const char *name, long n, void (*body)(long), long arg)
{
	long per = n / CHUNKS > 0 ? n / CHUNKS : 1;
	double wall = 0, best = -1;
	long done = 0;
	for (int c = 0; c < CHUNKS && done < n; c++) {
		long k = c == CHUNKS - 1 ? n - done : per;
		double t = now_ns(), u = cpu_ns();
		for (long i = 0; i < k; i++)
			body(arg);
		double cpu = (cpu_ns() - u) / (double)k;
		wall += now_ns() - t;
		if (best < 0 || cpu < best)
			best = cpu;
		done += k;
	}
	printf("%s %ld %.1f %.1f\n", name, n, wall / (double)done, best);
}

static long pid_sum;

static void do_getpid(long unused)
{
	(void)unused;
	pid_sum += syscall(SYS_getpid);
}

static void loop_getpid(long n)
{
	for (long i = 0; i < n / 10 + 1; i++) /* warm up */
		do_getpid(0);
	timed("getpid", n, do_getpid, 0);
	if (pid_sum == 0) /* keep the loop */
		fprintf(stderr, "getpid returned 0\n");
}

static void open_read_close(const char *file, char *buf, size_t len)
{
	int fd = openat(AT_FDCWD, file, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		perror(file);
		exit(3);
	}
	if (read(fd, buf, len) < 0) {
		perror("read");
		exit(3);
	}
	close(fd);
}

static const char *open_file;

static void do_open(long unused)
{
	char buf[4096];
	(void)unused;
	open_read_close(open_file, buf, sizeof buf);
}

static void loop_open(long n, const char *file, const char *name)
{
	open_file = file;
	for (long i = 0; i < n / 10 + 1; i++) /* warm up */
		do_open(0);
	timed(name, n, do_open, 0);
}

static void do_fork_exec(long unused)
{
	char *argv[] = {"true", NULL};
	char *envp[] = {NULL};
	(void)unused;
	pid_t pid = fork();
	if (pid < 0) {
		perror("fork");
		exit(4);
	}
	if (pid == 0) {
		execve("/bin/true", argv, envp);
		_exit(127);
	}
	int status;
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		fprintf(stderr, "/bin/true failed (status %d)\n", status);
		exit(4);
	}
}

static void loop_fork_exec(long n)
{
	do_fork_exec(0); /* warm up */
	timed("fork_exec_true", n, do_fork_exec, 0);
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: %s GETPID_N OPEN_N FORK_N [FILE]\n", argv[0]);
		return 1;
	}
	long getpid_n = atol(argv[1]), open_n = atol(argv[2]), fork_n = atol(argv[3]);
	const char *file = argc > 4 ? argv[4] : "/etc/passwd";
	if (getpid_n < 1 || open_n < 1 || fork_n < 1) {
		fprintf(stderr, "iteration counts must be >= 1\n");
		return 1;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	loop_getpid(getpid_n);
	loop_open(open_n, file, "open_read_close");
	if (argc > 5)
		loop_open(open_n, argv[5], "open_read_close_2");
	loop_fork_exec(fork_n);
	return 0;
}
