# cython: language_level=3
"""The WAL writer thread: writes a batch and fdatasyncs it without the GIL.

A Python I/O thread needs the GIL to start a job and again to finish it; under
load the event loop holds the GIL most of the time, and measured on a 2-core host
those two hand-offs cost ~0.8 ms per Raft cycle, more than the fdatasync itself.
This thread never takes the GIL: the event loop hands it (fd, bytes, offset) under
a mutex, the thread does pwrite + fdatasync, and it reports completion on an
eventfd that the loop watches with add_reader.

One job at a time: the Raft loop waits for each persist before the next.
Plain-Python fallback: kvcore/storage/walwriter_py.py (a thread pool).
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.errno cimport errno, EINTR
from libc.stdint cimport uint64_t
from posix.types cimport off_t
from posix.unistd cimport close, read, write


cdef extern from "<unistd.h>" nogil:
    ssize_t pwrite(int fd, const void* buf, size_t n, off_t offset)
    int fdatasync(int fd)

cdef extern from "<fcntl.h>" nogil:
    int sync_file_range(int fd, off_t offset, off_t nbytes, unsigned int flags)
    unsigned int SYNC_FILE_RANGE_WRITE

cdef extern from "<time.h>" nogil:
    ctypedef long time_t
    struct timespec:
        time_t tv_sec
        long tv_nsec
    int clock_gettime(int clk, timespec* ts)
    int CLOCK_MONOTONIC
    int nanosleep(const timespec* req, timespec* rem)


cdef extern from "<sys/eventfd.h>" nogil:
    int eventfd(unsigned int initval, int flags)
    int EFD_NONBLOCK
    int EFD_CLOEXEC

cdef extern from "<pthread.h>" nogil:
    ctypedef struct pthread_t:
        pass
    ctypedef struct pthread_mutex_t:
        pass
    ctypedef struct pthread_cond_t:
        pass
    int pthread_create(pthread_t* th, void* attr, void* (*fn)(void*) noexcept nogil, void* arg)
    int pthread_join(pthread_t th, void** ret)
    int pthread_mutex_init(pthread_mutex_t* m, void* attr)
    int pthread_mutex_destroy(pthread_mutex_t* m)
    int pthread_mutex_lock(pthread_mutex_t* m)
    int pthread_mutex_unlock(pthread_mutex_t* m)
    int pthread_cond_init(pthread_cond_t* c, void* attr)
    int pthread_cond_destroy(pthread_cond_t* c)
    int pthread_cond_wait(pthread_cond_t* c, pthread_mutex_t* m)
    int pthread_cond_signal(pthread_cond_t* c)


cdef struct Job:
    int fd
    const char* data
    size_t size
    off_t offset
    int sync
    int pending      # a job is waiting for the thread
    int stop
    int error        # errno of the last job, 0 if it succeeded
    int efd
    double sync_seconds  # how long the last job's fdatasync took (0 without one)
    double fsync_delay   # the wal-fsync failpoint's sleep: a slow disk (0: off)
    pthread_mutex_t mu
    pthread_cond_t cv


cdef int _write(int fd, const char* data, size_t size, off_t offset, bint sync,
                double delay, double* took) noexcept nogil:
    """pwrite all of data at offset, then (if sync) sleep ``delay`` and fdatasync;
    -> errno (0: done). ``took``: the sync's duration, delay included (0 without)."""
    cdef ssize_t n
    cdef size_t done = 0
    cdef int err = 0
    cdef timespec t0, t1, pause
    took[0] = 0
    while done < size:
        n = pwrite(fd, data + done, size - done, offset + <off_t>done)
        if n < 0:
            if errno == EINTR:
                continue
            return errno
        done += <size_t>n
    if sync:
        clock_gettime(CLOCK_MONOTONIC, &t0)
        if delay > 0:
            pause.tv_sec = <time_t>delay
            pause.tv_nsec = <long>((delay - pause.tv_sec) * 1e9)
            nanosleep(&pause, NULL)
        while fdatasync(fd) != 0:
            if errno != EINTR:
                err = errno
                break
        clock_gettime(CLOCK_MONOTONIC, &t1)
        took[0] = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9
    return err


cdef void* _run(void* arg) noexcept nogil:
    cdef Job* j = <Job*>arg
    cdef int err
    cdef uint64_t one = 1
    cdef double took
    while True:
        pthread_mutex_lock(&j.mu)
        while not j.pending and not j.stop:
            pthread_cond_wait(&j.cv, &j.mu)
        if j.stop and not j.pending:
            pthread_mutex_unlock(&j.mu)
            return NULL
        pthread_mutex_unlock(&j.mu)
        err = _write(j.fd, j.data, j.size, j.offset, j.sync, j.fsync_delay, &took)
        pthread_mutex_lock(&j.mu)
        j.error = err
        j.sync_seconds = took
        j.pending = 0
        pthread_mutex_unlock(&j.mu)
        write(j.efd, &one, 8)


cdef class WalWriter:
    """``submit(fd, blob, offset, sync)`` starts a job; ``fileno()`` becomes readable
    when it is done; ``finish()`` then returns its errno (0 on success)."""

    cdef Job job
    cdef pthread_t thread
    cdef bint started
    cdef bytes blob          # keeps the buffer alive while the thread reads it

    def __cinit__(self):
        self.started = False
        self.job.pending = 0
        self.job.stop = 0
        self.job.error = 0
        self.job.sync_seconds = 0
        self.job.fsync_delay = 0
        self.job.efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)
        if self.job.efd < 0:
            raise OSError(errno, "eventfd failed")
        pthread_mutex_init(&self.job.mu, NULL)
        pthread_cond_init(&self.job.cv, NULL)
        if pthread_create(&self.thread, NULL, _run, &self.job) != 0:
            close(self.job.efd)
            raise OSError("cannot start the WAL writer thread")
        self.started = True

    def fileno(self) -> int:
        return self.job.efd

    def submit(self, int fd, bytes blob, off_t offset, bint sync):
        if self.job.pending:
            raise RuntimeError("a WAL write is already in progress")
        self.blob = blob
        with nogil:
            pthread_mutex_lock(&self.job.mu)
        self.job.fd = fd
        self.job.data = PyBytes_AS_STRING(blob)
        self.job.size = <size_t>PyBytes_GET_SIZE(blob)
        self.job.offset = offset
        self.job.sync = sync
        self.job.pending = 1
        pthread_cond_signal(&self.job.cv)
        pthread_mutex_unlock(&self.job.mu)

    def write_now(self, int fd, bytes blob, off_t offset, bint sync, meanwhile=None) -> int:
        """Write (and fdatasync) on the calling thread, the GIL released; -> errno
        (0: written and synced). For an idle pipeline: no hand-off to the thread and
        back, two cross-CPU wake-ups fewer per write. Not while a job is pending.

        ``meanwhile()``: called between the write and its fdatasync, once the
        device has been asked to start writing the range (sync_file_range): work
        done there overlaps the device's. The fdatasync runs even if it raises
        (its exception propagates after)."""
        cdef const char* data = PyBytes_AS_STRING(blob)
        cdef size_t size = <size_t>PyBytes_GET_SIZE(blob)
        cdef int err
        if self.job.pending:
            raise RuntimeError("a WAL write is already in progress")
        if meanwhile is None:
            with nogil:
                err = _write(fd, data, size, offset, sync, self.job.fsync_delay,
                             &self.job.sync_seconds)
            return err
        with nogil:
            err = _write(fd, data, size, offset, 0, 0, &self.job.sync_seconds)
            if err == 0 and sync:
                sync_file_range(fd, offset, <off_t>size, SYNC_FILE_RANGE_WRITE)  # a hint
        if err:
            return err
        try:
            meanwhile()
        finally:
            if sync:
                with nogil:
                    err = _write(fd, data, 0, offset, 1, self.job.fsync_delay,
                                 &self.job.sync_seconds)
        return err

    def finish(self) -> int:
        """Consume the completion signal; -> errno of the job (0: written and synced).
        Returns -1 if the job is still running (a spurious wake-up)."""
        cdef uint64_t v
        cdef int err
        read(self.job.efd, &v, 8)
        with nogil:
            pthread_mutex_lock(&self.job.mu)
        if self.job.pending:
            pthread_mutex_unlock(&self.job.mu)
            return -1
        err = self.job.error
        pthread_mutex_unlock(&self.job.mu)
        self.blob = None
        return err

    def sync_seconds(self) -> float:
        """Duration of the finished job's fdatasync (etcd_disk_wal_fsync_duration_seconds)."""
        return self.job.sync_seconds

    def set_fsync_delay(self, double seconds):
        """Sleep this long before each fdatasync, counted in its duration: a slow disk
        (the wal-fsync failpoint). On the writer thread the loop runs meanwhile;
        write_now sleeps on the caller's thread."""
        self.job.fsync_delay = seconds

    def close(self):
        if not self.started:
            return
        self.started = False
        with nogil:
            pthread_mutex_lock(&self.job.mu)
            self.job.stop = 1
            pthread_cond_signal(&self.job.cv)
            pthread_mutex_unlock(&self.job.mu)
            pthread_join(self.thread, NULL)
        close(self.job.efd)
        pthread_mutex_destroy(&self.job.mu)
        pthread_cond_destroy(&self.job.cv)

    def __dealloc__(self):
        self.close()
