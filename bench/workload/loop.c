/* moat-bench's in-pod workload: times itself, so only the container's own cost is measured.
 *
 *   loop GETPID_N OPEN_N FORK_N [FILE]
 *
 * Prints one line per loop: "<name> <iterations> <ns per iteration>".
 *   getpid          syscall(SYS_getpid) (glibc caches nothing here: a real syscall each time)
 *   open_read_close openat + read (up to 4 KiB) + close of FILE (default /etc/passwd)
 *   fork_exec_true  fork + execve("/bin/true") + waitpid
 * Built with `gcc -static` so it runs in any image. Exits non-zero on any failure.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_ns(void)
{
	struct timespec ts;
	if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) {
		perror("clock_gettime");
		exit(2);
	}
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void loop_getpid(long n)
{
	long sum = 0;
	for (long i = 0; i < n / 10 + 1; i++) /* warm up */
		sum += syscall(SYS_getpid);
	double t = now_ns();
	for (long i = 0; i < n; i++)
		sum += syscall(SYS_getpid);
	double ns = (now_ns() - t) / (double)n;
	if (sum == 0) /* keep the loop */
		fprintf(stderr, "getpid returned 0\n");
	printf("getpid %ld %.1f\n", n, ns);
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

static void loop_open(long n, const char *file)
{
	char buf[4096];
	for (long i = 0; i < n / 10 + 1; i++) /* warm up */
		open_read_close(file, buf, sizeof buf);
	double t = now_ns();
	for (long i = 0; i < n; i++)
		open_read_close(file, buf, sizeof buf);
	printf("open_read_close %ld %.1f\n", n, (now_ns() - t) / (double)n);
}

static void loop_fork_exec(long n)
{
	char *argv[] = {"true", NULL};
	char *envp[] = {NULL};
	double start = 0;
	for (long i = 0; i <= n; i++) {
		if (i == 1) /* iteration 0 warms up */
			start = now_ns();
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
	printf("fork_exec_true %ld %.1f\n", n, (now_ns() - start) / (double)n);
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
	loop_open(open_n, file);
	loop_fork_exec(fork_n);
	return 0;
}
