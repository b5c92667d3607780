// npc-brain wire protocol v1 client for Unity (and any .NET Standard 2.0 / Mono runtime).
//
// Self-contained: a small MessagePack codec (MsgPack), request builders, and a client that
// matches replies to requests by id. The socket sits behind INpcBrainTransport; the NetMQ
// DEALER implementation is in NetMqTransport.cs (add NetMQ to the project to use it).
// Spec: protocol/SPEC.md. The codec is tested against protocol/vectors (tests/VectorTest.cs).
//
// Unity use (main thread):
//   var client = new NpcBrainClient(new NetMqTransport("tcp://127.0.0.1:5555"));
//   client.Hello();
//   string id = client.Say(new SayRequest { Npc = "maren", CharacterRef = "maren",
//                                            Utterance = "Hello!", Stream = true });
//   client.OnPartial += p => subtitle.text += p.Text;
//   client.OnLine += line => Speak(line.Text, line.Emotion);
//   void Update() { client.Poll(); }

using System;
using System.Collections;
using System.Collections.Generic;
using System.IO;
using System.Text;

namespace NpcBrain
{
    /// <summary>A msgpack map that keeps insertion order (the canonical encoding depends on it).</summary>
    public sealed class MsgMap : IEnumerable<KeyValuePair<string, object>>
    {
        private readonly List<string> _keys = new List<string>();
        private readonly Dictionary<string, object> _values = new Dictionary<string, object>();

        public int Count { get { return _keys.Count; } }
        public IList<string> Keys { get { return _keys.AsReadOnly(); } }

        public object this[string key]
        {
            get { return _values[key]; }
            set
            {
                if (!_values.ContainsKey(key)) _keys.Add(key);
                _values[key] = value;
            }
        }

        /// <summary>Collection-initializer support: new MsgMap { { "v", 1 }, { "type", "say" } }.</summary>
        public void Add(string key, object value) { this[key] = value; }
        public bool ContainsKey(string key) { return _values.ContainsKey(key); }

        public bool TryGetValue(string key, out object value) { return _values.TryGetValue(key, out value); }

        public object Get(string key) { object v; return _values.TryGetValue(key, out v) ? v : null; }

        public IEnumerator<KeyValuePair<string, object>> GetEnumerator()
        {
            foreach (var k in _keys) yield return new KeyValuePair<string, object>(k, _values[k]);
        }

        IEnumerator IEnumerable.GetEnumerator() { return GetEnumerator(); }
    }

    public sealed class MsgPackException : Exception
    {
        public MsgPackException(string message) : base(message) { }
    }

    /// <summary>
    /// Minimal MessagePack codec. Encode writes the canonical form of SPEC.md section 2: shortest
    /// ints (unsigned formats for non-negative values), float64 for float and double, str for
    /// string, bin for byte[], maps in insertion order. Decode accepts any valid encoding, rejects
    /// ext types and non-string map keys, and gives: null, bool, long (ulong above long.MaxValue),
    /// double, string, byte[], List&lt;object&gt;, MsgMap.
    /// </summary>
    public static class MsgPack
    {
        public const int MaxDepth = 16; // replies are shallow; this only guards the decoder

        private static readonly UTF8Encoding Utf8 = new UTF8Encoding(false, true);

        public static byte[] Encode(object value)
        {
            var ms = new MemoryStream();
            Write(ms, value, 0);
            return ms.ToArray();
        }

        private static void Write(MemoryStream s, object v, int depth)
        {
            if (depth > 64) throw new MsgPackException("value nested too deeply");
            if (v == null) { s.WriteByte(0xc0); return; }
            if (v is bool) { s.WriteByte((bool)v ? (byte)0xc3 : (byte)0xc2); return; }
            if (v is string) { WriteStr(s, (string)v); return; }
            if (v is byte[]) { WriteBin(s, (byte[])v); return; }
            if (v is double) { WriteFloat64(s, (double)v); return; }
            if (v is float) { WriteFloat64(s, (float)v); return; }
            if (v is ulong) { WriteUInt(s, (ulong)v); return; }
            if (v is long || v is int || v is short || v is sbyte || v is uint || v is ushort || v is byte)
            {
                long n = Convert.ToInt64(v);
                if (n >= 0) WriteUInt(s, (ulong)n); else WriteNegInt(s, n);
                return;
            }
            if (v is MsgMap)
            {
                var m = (MsgMap)v;
                WriteHeader(s, m.Count, 0x80, 0xde, 0xdf);
                foreach (var kv in m) { WriteStr(s, kv.Key); Write(s, kv.Value, depth + 1); }
                return;
            }
            if (v is IDictionary)
            {
                var d = (IDictionary)v;
                WriteHeader(s, d.Count, 0x80, 0xde, 0xdf);
                foreach (DictionaryEntry kv in d)
                {
                    var key = kv.Key as string;
                    if (key == null) throw new MsgPackException("map keys must be strings");
                    WriteStr(s, key);
                    Write(s, kv.Value, depth + 1);
                }
                return;
            }
            if (v is IList)
            {
                var list = (IList)v;
                WriteHeader(s, list.Count, 0x90, 0xdc, 0xdd);
                foreach (var item in list) Write(s, item, depth + 1);
                return;
            }
            throw new MsgPackException("cannot encode " + v.GetType().Name);
        }

        private static void WriteHeader(MemoryStream s, int n, byte fix, byte b16, byte b32)
        {
            if (n < 16) s.WriteByte((byte)(fix | n));
            else if (n <= 0xffff) { s.WriteByte(b16); WriteBE(s, (ulong)n, 2); }
            else { s.WriteByte(b32); WriteBE(s, (ulong)n, 4); }
        }

        private static void WriteStr(MemoryStream s, string str)
        {
            byte[] b = Utf8.GetBytes(str);
            int n = b.Length;
            if (n < 32) s.WriteByte((byte)(0xa0 | n));
            else if (n <= 0xff) { s.WriteByte(0xd9); s.WriteByte((byte)n); }
            else if (n <= 0xffff) { s.WriteByte(0xda); WriteBE(s, (ulong)n, 2); }
            else { s.WriteByte(0xdb); WriteBE(s, (ulong)n, 4); }
            s.Write(b, 0, n);
        }

        private static void WriteBin(MemoryStream s, byte[] b)
        {
            int n = b.Length;
            if (n <= 0xff) { s.WriteByte(0xc4); s.WriteByte((byte)n); }
            else if (n <= 0xffff) { s.WriteByte(0xc5); WriteBE(s, (ulong)n, 2); }
            else { s.WriteByte(0xc6); WriteBE(s, (ulong)n, 4); }
            s.Write(b, 0, n);
        }

        private static void WriteUInt(MemoryStream s, ulong n)
        {
            if (n < 128) s.WriteByte((byte)n);
            else if (n <= 0xff) { s.WriteByte(0xcc); s.WriteByte((byte)n); }
            else if (n <= 0xffff) { s.WriteByte(0xcd); WriteBE(s, n, 2); }
            else if (n <= 0xffffffffUL) { s.WriteByte(0xce); WriteBE(s, n, 4); }
            else { s.WriteByte(0xcf); WriteBE(s, n, 8); }
        }

        private static void WriteNegInt(MemoryStream s, long n)
        {
            if (n >= -32) s.WriteByte((byte)(sbyte)n);
            else if (n >= sbyte.MinValue) { s.WriteByte(0xd0); s.WriteByte((byte)(sbyte)n); }
            else if (n >= short.MinValue) { s.WriteByte(0xd1); WriteBE(s, (ulong)n, 2); }
            else if (n >= int.MinValue) { s.WriteByte(0xd2); WriteBE(s, (ulong)n, 4); }
            else { s.WriteByte(0xd3); WriteBE(s, (ulong)n, 8); }
        }

        private static void WriteFloat64(MemoryStream s, double d)
        {
            s.WriteByte(0xcb);
            WriteBE(s, (ulong)BitConverter.DoubleToInt64Bits(d), 8);
        }

        private static void WriteBE(MemoryStream s, ulong n, int width)
        {
            for (int i = width - 1; i >= 0; i--) s.WriteByte((byte)(n >> (8 * i)));
        }

        // -- decoding ---------------------------------------------------------------------

        public static object Decode(byte[] data)
        {
            int pos = 0;
            object v = Read(data, ref pos, 0);
            if (pos != data.Length) throw new MsgPackException("trailing bytes after the message");
            return v;
        }

        private static object Read(byte[] d, ref int pos, int depth)
        {
            byte b = Take(d, ref pos, 1)[0];
            if (b <= 0x7f) return (long)b;
            if (b >= 0xe0) return (long)(sbyte)b;
            if (b >= 0x80 && b <= 0x8f) return ReadMap(d, ref pos, b & 0x0f, depth);
            if (b >= 0x90 && b <= 0x9f) return ReadArray(d, ref pos, b & 0x0f, depth);
            if (b >= 0xa0 && b <= 0xbf) return ReadStr(d, ref pos, b & 0x1f);
            switch (b)
            {
                case 0xc0: return null;
                case 0xc2: return false;
                case 0xc3: return true;
                case 0xc4: return Take(d, ref pos, (int)ReadBE(d, ref pos, 1));
                case 0xc5: return Take(d, ref pos, (int)ReadBE(d, ref pos, 2));
                case 0xc6: return Take(d, ref pos, Length(ReadBE(d, ref pos, 4)));
                case 0xca:
                {
                    byte[] f = Take(d, ref pos, 4);
                    if (BitConverter.IsLittleEndian) Array.Reverse(f);
                    return (double)BitConverter.ToSingle(f, 0);
                }
                case 0xcb: return BitConverter.Int64BitsToDouble((long)ReadBE(d, ref pos, 8));
                case 0xcc: return (long)ReadBE(d, ref pos, 1);
                case 0xcd: return (long)ReadBE(d, ref pos, 2);
                case 0xce: return (long)ReadBE(d, ref pos, 4);
                case 0xcf:
                {
                    ulong u = ReadBE(d, ref pos, 8);
                    if (u > long.MaxValue) return u;
                    return (long)u;
                }
                case 0xd0: return (long)(sbyte)ReadBE(d, ref pos, 1);
                case 0xd1: return (long)(short)ReadBE(d, ref pos, 2);
                case 0xd2: return (long)(int)ReadBE(d, ref pos, 4);
                case 0xd3: return (long)ReadBE(d, ref pos, 8);
                case 0xd9: return ReadStr(d, ref pos, (int)ReadBE(d, ref pos, 1));
                case 0xda: return ReadStr(d, ref pos, (int)ReadBE(d, ref pos, 2));
                case 0xdb: return ReadStr(d, ref pos, Length(ReadBE(d, ref pos, 4)));
                case 0xdc: return ReadArray(d, ref pos, (int)ReadBE(d, ref pos, 2), depth);
                case 0xdd: return ReadArray(d, ref pos, Length(ReadBE(d, ref pos, 4)), depth);
                case 0xde: return ReadMap(d, ref pos, (int)ReadBE(d, ref pos, 2), depth);
                case 0xdf: return ReadMap(d, ref pos, Length(ReadBE(d, ref pos, 4)), depth);
                case 0xc1: throw new MsgPackException("reserved byte 0xc1");
                default: throw new MsgPackException("msgpack ext types are not allowed");
            }
        }

        private static int Length(ulong n)
        {
            if (n > int.MaxValue) throw new MsgPackException("declared length too large");
            return (int)n;
        }

        private static List<object> ReadArray(byte[] d, ref int pos, int n, int depth)
        {
            if (depth + 1 > MaxDepth) throw new MsgPackException("nesting too deep");
            if (n > d.Length - pos) throw new MsgPackException("truncated frame");
            var list = new List<object>(n);
            for (int i = 0; i < n; i++) list.Add(Read(d, ref pos, depth + 1));
            return list;
        }

        private static MsgMap ReadMap(byte[] d, ref int pos, int n, int depth)
        {
            if (depth + 1 > MaxDepth) throw new MsgPackException("nesting too deep");
            if (n > d.Length - pos) throw new MsgPackException("truncated frame");
            var map = new MsgMap();
            for (int i = 0; i < n; i++)
            {
                var key = Read(d, ref pos, depth + 1) as string;
                if (key == null) throw new MsgPackException("map keys must be strings");
                map[key] = Read(d, ref pos, depth + 1);
            }
            return map;
        }

        private static string ReadStr(byte[] d, ref int pos, int n)
        {
            byte[] b = Take(d, ref pos, n);
            try { return Utf8.GetString(b); }
            catch (ArgumentException) { throw new MsgPackException("string is not valid UTF-8"); }
        }

        private static ulong ReadBE(byte[] d, ref int pos, int width)
        {
            byte[] b = Take(d, ref pos, width);
            ulong n = 0;
            for (int i = 0; i < width; i++) n = (n << 8) | b[i];
            return n;
        }

        private static byte[] Take(byte[] d, ref int pos, int n)
        {
            if (n < 0 || n > d.Length - pos) throw new MsgPackException("truncated frame");
            var b = new byte[n];
            Buffer.BlockCopy(d, pos, b, 0, n);
            pos += n;
            return b;
        }
    }

    // -- protocol types ------------------------------------------------------------------

    public static class Protocol
    {
        public const int Version = 1;
        public const int MaxFrameBytes = 8 * 1024 * 1024;
        public const int MaxScreenshotBytes = 6 * 1024 * 1024;
        public const int MaxScreenshotSide = 4096;
        public const int MaxScreenshotPixels = 4096 * 4096;
        public const int MaxUtteranceChars = 1000;
        public const int MaxHistory = 32;
    }

    /// <summary>The error codes of SPEC.md section 7, as sent on the wire.</summary>
    public static class ErrorCodes
    {
        public const string BadRequest = "BAD_REQUEST";
        public const string TooLarge = "TOO_LARGE";
        public const string UnsupportedVersion = "UNSUPPORTED_VERSION";
        public const string BadImage = "BAD_IMAGE";
        public const string BadCharacter = "BAD_CHARACTER";
        public const string UnknownCharacter = "UNKNOWN_CHARACTER";
        public const string BadState = "BAD_STATE";
        public const string DuplicateId = "DUPLICATE_ID";
        public const string Overloaded = "OVERLOADED";
        public const string NotReady = "NOT_READY";
        public const string Timeout = "TIMEOUT";
        public const string Cancelled = "CANCELLED";
        public const string Internal = "INTERNAL";
    }

    public sealed class Screenshot
    {
        public string Format;  // "png", "jpeg", "rgb", "rgba"
        public byte[] Data;
        public int Width;      // required for rgb/rgba; 0 = leave out
        public int Height;
        public bool ReadText;  // also read signs and banners on it (OCR, ~300 ms; SPEC 5.3)

        /// <summary>Raw pixels, e.g. from Texture2D.GetRawTextureData() of an RGB24 texture.
        /// Unity's rows go bottom to top: flip them first (the protocol wants top to bottom).</summary>
        public static Screenshot Rgb(byte[] pixels, int width, int height)
        { return new Screenshot { Format = "rgb", Data = pixels, Width = width, Height = height }; }

        public static Screenshot Jpeg(byte[] jpeg) { return new Screenshot { Format = "jpeg", Data = jpeg }; }
        public static Screenshot Png(byte[] png) { return new Screenshot { Format = "png", Data = png }; }
    }

    public sealed class SayRequest
    {
        public string Npc;
        public string Session;        // null = "default"
        public MsgMap Character;      // inline sheet, or
        public string CharacterRef;   // a ref from Register
        public string Utterance;
        public Screenshot Screenshot;
        public MsgMap Scene;          // str -> str or List<object> of str
        public List<KeyValuePair<string, string>> History; // (speaker "player"|"npc", text)
        public double? Temperature, TopP, RepetitionPenalty;
        public int? TopK, MaxTokens;
        public long? Seed;
        public int? DeadlineMs;
        public bool Stream;
    }

    public sealed class Line
    {
        public string Id, Text, Emotion, BundleId;
        public MsgMap Scene, Timings;
        public long Tokens;
        public ulong Seed;
        public bool Cached;
    }

    public sealed class Partial
    {
        public string Id, Text;
        public long Seq;
    }

    public sealed class ErrorReply
    {
        public string Id, Code, Message;  // Id is null when the daemon could not parse the frame
        public long? RetryAfterMs;
    }

    /// <summary>Moves whole frames; one frame = one message. Implementations must not block.</summary>
    public interface INpcBrainTransport : IDisposable
    {
        void Send(byte[] frame);
        bool TryReceive(out byte[] frame);
    }

    /// <summary>Builds requests, sends them, and dispatches replies from Poll() (call it every frame).</summary>
    public sealed class NpcBrainClient : IDisposable
    {
        private readonly INpcBrainTransport _transport;
        private readonly string _idPrefix;
        private long _counter;

        public event Action<MsgMap> OnWelcome;
        public event Action<Partial> OnPartial;
        public event Action<Line> OnLine;
        public event Action<ErrorReply> OnError;
        /// <summary>Every other reply (ok, registered, session_state, status, health) as a map.</summary>
        public event Action<MsgMap> OnReply;

        public NpcBrainClient(INpcBrainTransport transport, string idPrefix = null)
        {
            _transport = transport;
            _idPrefix = idPrefix ?? Guid.NewGuid().ToString("N").Substring(0, 8);
        }

        public string NextId() { return _idPrefix + ":" + (++_counter); }

        private static MsgMap Envelope(string type, string id)
        {
            var m = new MsgMap { { "v", Protocol.Version }, { "type", type } };
            if (id != null) m["id"] = id;
            return m;
        }

        public void SendMessage(MsgMap msg)
        {
            byte[] frame = MsgPack.Encode(msg);
            if (frame.Length > Protocol.MaxFrameBytes)
                throw new ArgumentException("frame of " + frame.Length + " bytes is over the 8 MiB limit");
            _transport.Send(frame);
        }

        public void Hello()
        {
            var m = Envelope("hello", null);
            m["versions"] = new List<object> { Protocol.Version };
            SendMessage(m);
        }

        public static MsgMap BuildSay(string id, SayRequest r)
        {
            if ((r.Character == null) == (r.CharacterRef == null))
                throw new ArgumentException("give exactly one of Character and CharacterRef");
            var m = Envelope("say", id);
            m["npc"] = r.Npc;
            if (r.Session != null) m["session"] = r.Session;
            if (r.Character != null) m["character"] = r.Character; else m["character_ref"] = r.CharacterRef;
            m["utterance"] = r.Utterance;
            if (r.Screenshot != null)
            {
                var s = new MsgMap { { "format", r.Screenshot.Format }, { "data", r.Screenshot.Data } };
                if (r.Screenshot.Width > 0) s["width"] = r.Screenshot.Width;
                if (r.Screenshot.Height > 0) s["height"] = r.Screenshot.Height;
                if (r.Screenshot.ReadText) s["read_text"] = true;
                m["screenshot"] = s;
            }
            if (r.Scene != null) m["scene"] = r.Scene;
            if (r.History != null)
            {
                var h = new List<object>();
                foreach (var turn in r.History)
                    h.Add(new MsgMap { { "speaker", turn.Key }, { "text", turn.Value } });
                m["history"] = h;
            }
            var o = new MsgMap();
            if (r.Temperature.HasValue) o["temperature"] = r.Temperature.Value;
            if (r.TopP.HasValue) o["top_p"] = r.TopP.Value;
            if (r.TopK.HasValue) o["top_k"] = r.TopK.Value;
            if (r.RepetitionPenalty.HasValue) o["repetition_penalty"] = r.RepetitionPenalty.Value;
            if (r.MaxTokens.HasValue) o["max_tokens"] = r.MaxTokens.Value;
            if (o.Count > 0) m["options"] = o;
            if (r.Seed.HasValue) m["seed"] = r.Seed.Value;
            if (r.DeadlineMs.HasValue) m["deadline_ms"] = r.DeadlineMs.Value;
            if (r.Stream) m["stream"] = true;
            return m;
        }

        /// <summary>Sends a say; returns its request id (replies carry it).</summary>
        public string Say(SayRequest r)
        {
            string id = NextId();
            SendMessage(BuildSay(id, r));
            return id;
        }

        public string Register(MsgMap character)
        {
            string id = NextId();
            var m = Envelope("register", id);
            m["character"] = character;
            SendMessage(m);
            return id;
        }

        public string Cancel(string target)
        {
            string id = NextId();
            var m = Envelope("cancel", id);
            m["target"] = target;
            SendMessage(m);
            return id;
        }

        private string SessionRequest(string type, string npc, string session, byte[] state)
        {
            string id = NextId();
            var m = Envelope(type, id);
            m["npc"] = npc;
            m["session"] = session ?? "default";
            if (state != null) m["state"] = state;
            SendMessage(m);
            return id;
        }

        public string ResetSession(string npc, string session = null) { return SessionRequest("reset_session", npc, session, null); }
        public string ExportSession(string npc, string session = null) { return SessionRequest("export_session", npc, session, null); }
        public string ImportSession(string npc, string session, byte[] state) { return SessionRequest("import_session", npc, session, state); }

        public string Status() { string id = NextId(); SendMessage(Envelope("status", id)); return id; }
        public string Health() { string id = NextId(); SendMessage(Envelope("health", id)); return id; }

        /// <summary>Dispatches every reply waiting in the transport; returns how many.</summary>
        public int Poll(int max = 64)
        {
            int n = 0;
            byte[] frame;
            while (n < max && _transport.TryReceive(out frame))
            {
                n++;
                MsgMap msg;
                try { msg = MsgPack.Decode(frame) as MsgMap; }
                catch (MsgPackException) { continue; }  // a broken reply frame: nothing to match it to
                if (msg != null) Dispatch(msg);
            }
            return n;
        }

        public void Dispatch(MsgMap msg)
        {
            string type = msg.Get("type") as string;
            switch (type)
            {
                case "welcome": if (OnWelcome != null) OnWelcome(msg); break;
                case "partial": if (OnPartial != null) OnPartial(ParsePartial(msg)); break;
                case "line": if (OnLine != null) OnLine(ParseLine(msg)); break;
                case "error": if (OnError != null) OnError(ParseError(msg)); break;
                default: if (OnReply != null) OnReply(msg); break;
            }
        }

        private static long Int(object v) { return v is ulong ? (long)(ulong)v : v is long ? (long)v : 0; }

        public static Partial ParsePartial(MsgMap m)
        {
            return new Partial { Id = m.Get("id") as string, Seq = Int(m.Get("seq")), Text = m.Get("text") as string };
        }

        public static Line ParseLine(MsgMap m)
        {
            object seed = m.Get("seed");
            return new Line
            {
                Id = m.Get("id") as string, Text = m.Get("text") as string,
                Emotion = m.Get("emotion") as string, BundleId = m.Get("bundle_id") as string,
                Scene = m.Get("scene") as MsgMap, Timings = m.Get("timings") as MsgMap,
                Tokens = Int(m.Get("tokens")),
                Seed = seed is ulong ? (ulong)seed : (ulong)Int(seed),
                Cached = Equals(m.Get("cached"), true),
            };
        }

        public static ErrorReply ParseError(MsgMap m)
        {
            object retry = m.Get("retry_after_ms");
            return new ErrorReply
            {
                Id = m.Get("id") as string, Code = m.Get("code") as string,
                Message = m.Get("message") as string,
                RetryAfterMs = retry == null ? (long?)null : Int(retry),
            };
        }

        public void Dispose() { _transport.Dispose(); }
    }
}
