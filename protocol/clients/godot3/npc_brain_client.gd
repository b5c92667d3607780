## npc-brain wire protocol v1 client for Godot 3.2+ (spec: protocol/SPEC.md).
##
## The Godot 3 twin of ../godot/npc_brain_client.gd, with the same API: a msgpack codec (canonical
## encoder, strict decoder) and a client that builds requests and dispatches replies as signals.
## Godot 3 passes PoolByteArray by value, so the encoder writes into a StreamPeerBuffer (big-endian)
## instead of appending to an array handed down the calls. Godot has no ZeroMQ built in: the socket
## sits behind the small Transport class below (see ../godot/README.md for ways to provide one).
##
##   var client = NpcBrainClient.new(MyZmqTransport.new("tcp://127.0.0.1:5555"))
##   client.connect("line_received", self, "_on_line")
##   client.hello()
##   client.say({"npc": "maren", "character_ref": "maren", "utterance": "Hello!"})
##   func _process(_dt): client.poll()
class_name NpcBrainClient
extends Reference

signal welcome_received(msg)
signal partial_received(id, seq, text)
signal line_received(reply)
## id is null when the daemon could not parse the frame; retry_after_ms is -1 when absent.
signal error_received(id, code, message, retry_after_ms)
## ok, registered, session_state, status, health
signal reply_received(msg)

const PROTOCOL_VERSION := 1
const MAX_FRAME_BYTES := 8 * 1024 * 1024
const MAX_DECODE_DEPTH := 16
## Canonical order of the optional say fields (SPEC 5.3).
const SAY_FIELDS := ["npc", "session", "character", "character_ref", "utterance", "screenshot",
		"scene", "history", "options", "seed", "deadline_ms", "stream"]


## Moves whole frames (one frame = one msgpack map). Subclass it around a ZeroMQ DEALER.
class Transport:
	extends Reference

	func send(_frame: PoolByteArray) -> void:
		push_error("NpcBrainClient.Transport.send is not implemented")

	## Frames that have arrived since the last call (Array of PoolByteArray); must not block.
	func receive() -> Array:
		return []


## A Transport over plain TCP to `npc-brain relay` (loopback; frames carried as a 4-byte big-endian
## length and the msgpack bytes), for games without a ZeroMQ binding:
##   var client = NpcBrainClient.new(NpcBrainClient.RelayTransport.new("127.0.0.1", 5556))
class RelayTransport:
	extends Transport
	var peer := StreamPeerTCP.new()
	var _buf := PoolByteArray()

	func _init(host: String = "127.0.0.1", port: int = 5556) -> void:
		peer.big_endian = true
		peer.connect_to_host(host, port)

	func connected() -> bool:
		return peer.get_status() == StreamPeerTCP.STATUS_CONNECTED

	func send(frame: PoolByteArray) -> void:
		peer.put_u32(frame.size())
		peer.put_data(frame)

	func receive() -> Array:
		var frames := []
		if not connected():
			return frames
		var n := peer.get_available_bytes()
		if n > 0:
			var got: Array = peer.get_data(n)
			if got[0] == OK:
				_buf.append_array(got[1])
		while _buf.size() >= 4:
			var size := (_buf[0] << 24) | (_buf[1] << 16) | (_buf[2] << 8) | _buf[3]
			if _buf.size() < 4 + size:
				break
			frames.append(_buf.subarray(4, 3 + size) if size > 0 else PoolByteArray())
			_buf = _buf.subarray(4 + size, _buf.size() - 1) if _buf.size() > 4 + size else PoolByteArray()
		return frames


var transport: Transport
var _prefix: String
var _counter := 0


func _init(t: Transport, id_prefix: String = "") -> void:
	transport = t
	_prefix = id_prefix if id_prefix != "" else "%08x" % (randi() & 0xffffffff)


func next_id() -> String:
	_counter += 1
	return "%s:%d" % [_prefix, _counter]


# -- requests ------------------------------------------------------------------------

func send_message(msg: Dictionary) -> void:
	var frame := encode(msg)
	if frame.size() > MAX_FRAME_BYTES:
		push_error("npc-brain: frame of %d bytes is over the 8 MiB limit" % frame.size())
		return
	transport.send(frame)


static func envelope(msg_type: String, id) -> Dictionary:
	var msg := {"v": PROTOCOL_VERSION, "type": msg_type}
	if id != null:
		msg["id"] = id
	return msg


func hello() -> void:
	var msg := envelope("hello", null)
	msg["versions"] = [PROTOCOL_VERSION]
	send_message(msg)


## fields: npc, utterance, and character (Dictionary) or character_ref (String); optional
## session, screenshot, scene, history, options, seed, deadline_ms, stream.
static func build_say(id: String, fields: Dictionary) -> Dictionary:
	var msg := envelope("say", id)
	for key in SAY_FIELDS:
		if fields.has(key) and fields[key] != null:
			msg[key] = fields[key]
	return msg


## Sends a say; returns its request id (its replies carry it).
func say(fields: Dictionary) -> String:
	var id := next_id()
	send_message(build_say(id, fields))
	return id


func register(character: Dictionary) -> String:
	return _request("register", {"character": character})


func cancel(target: String) -> String:
	return _request("cancel", {"target": target})


func reset_session(npc: String, session: String = "default") -> String:
	return _request("reset_session", {"npc": npc, "session": session})


func export_session(npc: String, session: String = "default") -> String:
	return _request("export_session", {"npc": npc, "session": session})


func import_session(npc: String, session: String, state: PoolByteArray) -> String:
	return _request("import_session", {"npc": npc, "session": session, "state": state})


func status() -> String:
	return _request("status", {})


func health() -> String:
	return _request("health", {})


func _request(msg_type: String, fields: Dictionary) -> String:
	var id := next_id()
	var msg := envelope(msg_type, id)
	for key in fields:
		msg[key] = fields[key]
	send_message(msg)
	return id


## A screenshot field from an Image, e.g. get_viewport().get_texture().get_data().
## format: "rgb" (cheapest for the daemon), "rgba", or "png" where this Godot can write PNG to
## memory (3.3 and later); Godot 3 cannot write JPEG to memory.
static func screenshot_from_image(image: Image, format: String = "rgb") -> Dictionary:
	var img: Image = image.duplicate()
	if format == "png" and img.has_method("save_png_to_buffer"):
		return {"format": "png", "data": img.call("save_png_to_buffer")}
	if format == "rgba":
		img.convert(Image.FORMAT_RGBA8)
	else:
		format = "rgb"
		img.convert(Image.FORMAT_RGB8)
	return {"format": format, "data": img.get_data(),
			"width": img.get_width(), "height": img.get_height()}


# -- replies -------------------------------------------------------------------------

## Dispatches every frame waiting in the transport; returns how many.
func poll() -> int:
	var frames := transport.receive()
	for frame in frames:
		var result := decode(frame)
		if result["ok"] and typeof(result["value"]) == TYPE_DICTIONARY:
			dispatch(result["value"])
	return frames.size()


func dispatch(msg: Dictionary) -> void:
	match msg.get("type", ""):
		"welcome":
			emit_signal("welcome_received", msg)
		"partial":
			emit_signal("partial_received", msg.get("id", ""), msg.get("seq", 0), msg.get("text", ""))
		"line":
			emit_signal("line_received", msg)
		"error":
			var retry = msg.get("retry_after_ms")
			emit_signal("error_received", msg.get("id"), msg.get("code", ""), msg.get("message", ""),
					retry if typeof(retry) == TYPE_INT else -1)
		_:
			emit_signal("reply_received", msg)


# -- msgpack encoding (SPEC 2: shortest ints, float64, str, bin, maps in insertion order) -----

static func encode(value) -> PoolByteArray:
	var out := StreamPeerBuffer.new()
	out.big_endian = true
	_write(out, value, 0)
	return out.data_array


static func _write(out: StreamPeerBuffer, v, depth: int) -> void:
	if depth > 64:
		push_error("npc-brain: value nested too deeply")
		return
	match typeof(v):
		TYPE_NIL:
			out.put_u8(0xc0)
		TYPE_BOOL:
			out.put_u8(0xc3 if v else 0xc2)
		TYPE_INT:
			_write_int(out, v)
		TYPE_REAL:
			out.put_u8(0xcb)
			out.put_double(v)
		TYPE_STRING:
			_write_str(out, v)
		TYPE_RAW_ARRAY:
			var n: int = v.size()
			if n <= 0xff:
				out.put_u8(0xc4)
				out.put_u8(n)
			elif n <= 0xffff:
				out.put_u8(0xc5)
				out.put_u16(n)
			else:
				out.put_u8(0xc6)
				out.put_u32(n)
			out.put_data(v)
		TYPE_ARRAY:
			_write_header(out, v.size(), 0x90, 0xdc, 0xdd)
			for item in v:
				_write(out, item, depth + 1)
		TYPE_DICTIONARY:
			_write_header(out, v.size(), 0x80, 0xde, 0xdf)
			for key in v:
				if typeof(key) != TYPE_STRING:
					push_error("npc-brain: map keys must be strings")
					return
				_write_str(out, key)
				_write(out, v[key], depth + 1)
		_:
			push_error("npc-brain: cannot encode a value of type %d" % typeof(v))


static func _write_header(out: StreamPeerBuffer, n: int, fix: int, b16: int, b32: int) -> void:
	if n < 16:
		out.put_u8(fix | n)
	elif n <= 0xffff:
		out.put_u8(b16)
		out.put_u16(n)
	else:
		out.put_u8(b32)
		out.put_u32(n)


static func _write_str(out: StreamPeerBuffer, s: String) -> void:
	var b := s.to_utf8()
	var n := b.size()
	if n < 32:
		out.put_u8(0xa0 | n)
	elif n <= 0xff:
		out.put_u8(0xd9)
		out.put_u8(n)
	elif n <= 0xffff:
		out.put_u8(0xda)
		out.put_u16(n)
	else:
		out.put_u8(0xdb)
		out.put_u32(n)
	if n > 0:
		out.put_data(b)


static func _write_int(out: StreamPeerBuffer, n: int) -> void:
	if n >= 0:
		if n < 128:
			out.put_u8(n)
		elif n <= 0xff:
			out.put_u8(0xcc)
			out.put_u8(n)
		elif n <= 0xffff:
			out.put_u8(0xcd)
			out.put_u16(n)
		elif n <= 0xffffffff:
			out.put_u8(0xce)
			out.put_u32(n)
		else:
			out.put_u8(0xcf)
			out.put_u64(n)
	elif n >= -32:
		out.put_u8(n & 0xff)
	elif n >= -128:
		out.put_u8(0xd0)
		out.put_8(n)
	elif n >= -32768:
		out.put_u8(0xd1)
		out.put_16(n)
	elif n >= -2147483648:
		out.put_u8(0xd2)
		out.put_32(n)
	else:
		out.put_u8(0xd3)
		out.put_64(n)


# -- msgpack decoding ------------------------------------------------------------------

## Returns {"ok": true, "value": v} or {"ok": false, "error": "..."}. Values: null, bool, int,
## float, String, PoolByteArray (bin), Array, Dictionary. Rejects ext types, non-string map
## keys, invalid UTF-8, trailing bytes, uint64 above the int range, nesting over MAX_DECODE_DEPTH.
static func decode(frame: PoolByteArray) -> Dictionary:
	var r := _Reader.new(frame)
	var value = r.read(0)
	if r.err == "" and r.pos != frame.size():
		r.fail("trailing bytes after the message")
	if r.err != "":
		return {"ok": false, "error": r.err}
	return {"ok": true, "value": value}


## Byte arrays equal element by element (Godot 3 cannot compare PoolByteArrays with ==).
static func bytes_equal(a: PoolByteArray, b: PoolByteArray) -> bool:
	if a.size() != b.size():
		return false
	for i in a.size():
		if a[i] != b[i]:
			return false
	return true


class _Reader:
	extends Reference
	const MAX_DEPTH := 16  # NpcBrainClient.MAX_DECODE_DEPTH
	var d: PoolByteArray
	var pos := 0
	var err := ""

	func _init(data: PoolByteArray) -> void:
		d = data

	func fail(message: String) -> void:
		if err == "":
			err = message

	func take(n: int) -> PoolByteArray:
		if err != "" or n < 0 or n > d.size() - pos:
			fail("truncated frame")
			return PoolByteArray()
		if n == 0:
			return PoolByteArray()
		var b := d.subarray(pos, pos + n - 1)  # Godot 3: both ends inclusive
		pos += n
		return b

	func be(width: int) -> int:
		if err != "" or width > d.size() - pos:
			fail("truncated frame")
			return 0
		var n := 0
		for i in width:
			n = (n << 8) | d[pos + i]
		pos += width
		return n

	## NpcBrainClient.bytes_equal again: an inner class cannot reach its outer script's statics in
	## Godot 3 without the class_name registry, which a script run headless may not have.
	func same_bytes(a: PoolByteArray, b: PoolByteArray) -> bool:
		if a.size() != b.size():
			return false
		for i in a.size():
			if a[i] != b[i]:
				return false
		return true

	func signed(n: int, bits: int) -> int:
		return n - (1 << bits) if n >= (1 << (bits - 1)) else n

	func read_float(width: int) -> float:
		var b := take(width)
		if err != "":
			return 0.0
		var s := StreamPeerBuffer.new()
		s.big_endian = true
		s.data_array = b
		return s.get_float() if width == 4 else s.get_double()

	func read_str(n: int):
		var b := take(n)
		if err != "":
			return null
		var s := b.get_string_from_utf8()
		if not same_bytes(s.to_utf8(), b):
			fail("string is not valid UTF-8")
			return null
		return s

	# An array or map of n items may open here: not past the depth limit, and the frame must still
	# hold at least one byte per item (a declared length is never trusted to size anything).
	func container_ok(n: int, depth: int) -> bool:
		if depth + 1 > MAX_DEPTH:
			fail("nesting too deep")
			return false
		if n > d.size() - pos:
			fail("truncated frame")
			return false
		return true

	func read_array(n: int, depth: int):
		if not container_ok(n, depth):
			return null
		var a := []
		for i in n:
			a.append(read(depth + 1))
			if err != "":
				return null
		return a

	func read_map(n: int, depth: int):
		if not container_ok(n, depth):
			return null
		var m := {}
		for i in n:
			var key = read(depth + 1)
			if err == "" and typeof(key) != TYPE_STRING:
				fail("map keys must be strings")
			var value = read(depth + 1)
			if err != "":
				return null
			m[key] = value
		return m

	func read(depth: int):
		if err != "":
			return null
		if pos >= d.size():
			fail("truncated frame")
			return null
		var b: int = d[pos]
		pos += 1
		if b <= 0x7f:
			return b
		if b >= 0xe0:
			return b - 256
		if b <= 0x8f:
			return read_map(b & 0x0f, depth)
		if b <= 0x9f:
			return read_array(b & 0x0f, depth)
		if b <= 0xbf:
			return read_str(b & 0x1f)
		match b:
			0xc0:
				return null
			0xc2:
				return false
			0xc3:
				return true
			0xc4:
				return take(be(1))
			0xc5:
				return take(be(2))
			0xc6:
				return take(be(4))
			0xca:
				return read_float(4)
			0xcb:
				return read_float(8)
			0xcc:
				return be(1)
			0xcd:
				return be(2)
			0xce:
				return be(4)
			0xcf:
				var u := be(8)
				if u < 0:
					fail("uint64 above the int range")
				return u
			0xd0:
				return signed(be(1), 8)
			0xd1:
				return signed(be(2), 16)
			0xd2:
				return signed(be(4), 32)
			0xd3:
				return be(8)
			0xd9:
				return read_str(be(1))
			0xda:
				return read_str(be(2))
			0xdb:
				return read_str(be(4))
			0xdc:
				return read_array(be(2), depth)
			0xdd:
				return read_array(be(4), depth)
			0xde:
				return read_map(be(2), depth)
			0xdf:
				return read_map(be(4), depth)
			0xc1:
				fail("reserved byte 0xc1")
			_:
				fail("msgpack ext types are not allowed")
		return null
