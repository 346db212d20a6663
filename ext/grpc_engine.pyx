# cython: language_level=3
"""kvcore's native gRPC engine: HTTP/2 by the system libnghttp2, gRPC in Cython.

Layers (asyncpg-style)::

    asyncio/uvloop transport  ──bytes──▶  _Conn (this module: an asyncio Protocol)
        sniff: HTTP/2 client preface → nghttp2 session; else HTTP/1.x → _H1 parser
        nghttp2 C callbacks → _Stream state (headers, 5-byte gRPC framing, windows)
        complete calls → handlers of the MethodTable (request bytes → response bytes)
    kvcore/engine/native.py: NativeEngine (start/stop, listening sockets, config)

Lifetimes (the rules that keep the C pointers valid)
----------------------------------------------------
* A _Conn owns its ``nghttp2_session``; the session's user_data is the _Conn
  (borrowed: the session is deleted in _Conn._close_session / __dealloc__ before
  the _Conn can go away).
* A _Stream lives in ``_Conn.streams`` from HEADERS until nghttp2's
  on_stream_close callback; nghttp2's stream user data and the DATA provider's
  ``source.ptr`` point at it (borrowed from that dict). on_stream_close is the only
  place that removes it, after nghttp2 has forgotten the stream, so nghttp2 never
  sees a dangling pointer. Handlers may keep a _Stream past its close; every
  operation checks ``closed``.
* No user code runs inside an nghttp2 callback: calls whose request is complete
  are collected during ``mem_recv`` and dispatched after it returns.

Writes are batched: everything nghttp2 wants to send is drained into one
``transport.write`` per ``data_received`` and per event-loop turn (call_soon).

Parts (ext/engine/*.pxi, included below, one concept each with its contract on top):
grpc_codec (header rules), framing (5-byte gRPC messages), flow_control (windows and
buffer budget), keepalive (ping policy), engine_core (EngineCore), stream (_Stream,
_Requests: one call), stepper (eager unary handlers), callbacks (nghttp2 C
callbacks), connection (_Conn: the Protocol, HTTP/2 session, flush), http1 (HTTP/1.x).
"""
from libc.stdint cimport uint8_t, int32_t, uint32_t, uint64_t
from libc.string cimport memcpy, memcmp
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE, PyByteArray_Resize

from cpython.ref cimport PyObject, Py_DECREF
from h2_nghttp2 cimport *

cdef extern from "Python.h":
    # Python >= 3.10: resume a coroutine without raising StopIteration at its end.
    # Returns 0 (PYGEN_RETURN: *result is the return value), 1 (PYGEN_NEXT: *result
    # is what it yielded) or -1 (PYGEN_ERROR: an exception is set).
    int PyIter_Send(object iter, object arg, PyObject** presult) except? -1

import asyncio
import base64
import collections
import logging
import zlib

from kvcore.engine.base import (CLIENT_CN_HEADER, CLIENT_TLS_HEADER, CallContext, Framed,
                                GrpcError, StatusCode, certificate_cn, http_date,
                                unknown_method_message)

log = logging.getLogger("kvcore.engine.native")
_new_context = object.__new__

cdef bytes _POST = b"POST"
cdef bytes PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
cdef int PREFACE_LEN = 24

# Stream kinds, decided when the request headers are complete.
cdef enum Kind:
    K_UNKNOWN = 0
    K_UNARY = 1
    K_STREAM = 2
    K_HTTP = 3
    K_REJECT = 4

# Connection modes.
cdef enum Mode:
    M_SNIFF = 0
    M_H2 = 1
    M_H1 = 2
    M_CLOSED = 3

include "engine/grpc_codec.pxi"
include "engine/framing.pxi"
include "engine/flow_control.pxi"
include "engine/keepalive.pxi"
include "engine/engine_core.pxi"
include "engine/stream.pxi"
include "engine/stepper.pxi"
include "engine/callbacks.pxi"
include "engine/connection.pxi"
include "engine/http1.pxi"


def libnghttp2_version():
    """Version of the libnghttp2 this module is linked against at run time."""
    return nghttp2_version(0).version_str.decode()
