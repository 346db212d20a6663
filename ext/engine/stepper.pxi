# Eager unary handlers without a Task (included by grpc_engine.pyx).
#
# Contract: see the class docstring; a _Stepper belongs to one _Stream and reports
# the coroutine's end once, through ``_Stream.stepped_out``.


cdef class _Stepper:
    """Drives a unary handler coroutine that suspended after its eager first step,
    the way a Task would but without one: each future it awaits gets a done
    callback that sends the coroutine on. ``cancel()`` and ``done()`` stand in for
    the Task's (deadline, RST_STREAM, connection loss). Inside, the handler has no
    current task: ``asyncio.timeout()`` is not available to unary handlers."""

    cdef _Stream stream
    cdef object coro
    cdef object waiting
    cdef bint finished
    cdef bint cancel_requested

    def __cinit__(self, _Stream stream, coro):
        self.stream = stream
        self.coro = coro

    def done(self):
        return self.finished

    def cancel(self, msg=None):
        if self.finished:
            return False
        self.cancel_requested = True
        w = self.waiting
        if w is not None:
            w.cancel()      # its callback then throws CancelledError in
        return True

    cdef void wait(self, value):
        if value is None:   # a bare yield (asyncio.sleep(0)): run again next turn
            self.stream.conn.core.loop.call_soon(self._wakeup, None)
            return
        blocking = getattr(value, "_asyncio_future_blocking", None)
        if blocking is None:
            self._step(RuntimeError(f"unary handler yielded {value!r}, not a future"))
            return
        value._asyncio_future_blocking = False
        self.waiting = value
        value.add_done_callback(self._wakeup)

    def _wakeup(self, fut):
        self.waiting = None
        if self.cancel_requested:
            self._step(asyncio.CancelledError())
        else:
            self._step(None)

    cdef void _step(self, exc):
        cdef PyObject* res = NULL
        cdef int r
        try:
            if exc is None:
                r = PyIter_Send(self.coro, None, &res)
                value = <object>res
                Py_DECREF(value)
            else:
                value = self.coro.throw(exc)
                r = 1
        except StopIteration as stop:
            self._end(stop.value, None)
            return
        except BaseException as e:
            self._end(None, e)
            return
        if r == 0:
            self._end(value, None)
        else:
            self.wait(value)

    cdef void _end(self, result, exc):
        self.finished = True
        self.coro = None
        self.stream.stepped_out(result, exc)
