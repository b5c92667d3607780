// Conformance test of the C# codec against protocol/vectors.
//   mcs -out:VectorTest.exe ../NpcBrainClient.cs VectorTest.cs && mono VectorTest.exe ../../../vectors
// For every NAME.json: Encode(json) must equal NAME.msgpack byte for byte, and Decode(NAME.msgpack)
// must equal the JSON. Every bad/*.msgpack must decode or fail with MsgPackException only.

using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Text;
using NpcBrain;

public static class VectorTest
{
    private static int _passed, _failed;

    public static int Main(string[] args)
    {
        string dir = args.Length > 0 ? args[0] : "protocol/vectors";
        foreach (string path in Directory.GetFiles(dir, "*.json").OrderBy(p => p, StringComparer.Ordinal))
        {
            string name = Path.GetFileNameWithoutExtension(path);
            object json = new Json(File.ReadAllText(path, Encoding.UTF8)).Parse();
            byte[] expected = File.ReadAllBytes(Path.Combine(dir, name + ".msgpack"));
            byte[] encoded = MsgPack.Encode(json);
            Check(name + " encode", encoded.SequenceEqual(expected),
                  "got " + Hex(encoded, 48) + " want " + Hex(expected, 48));
            object decoded = null;
            string err = null;
            try { decoded = MsgPack.Decode(expected); } catch (MsgPackException e) { err = e.Message; }
            Check(name + " decode", err == null && DeepEqual(decoded, json), err ?? "decoded value differs");
        }

        // The request builder writes the canonical field order.
        var full = (MsgMap)new Json(File.ReadAllText(Path.Combine(dir, "say_full.json"), Encoding.UTF8)).Parse();
        var shot = (MsgMap)full["screenshot"];
        var options = (MsgMap)full["options"];
        var history = new List<KeyValuePair<string, string>>();
        foreach (MsgMap turn in (List<object>)full["history"])
            history.Add(new KeyValuePair<string, string>((string)turn["speaker"], (string)turn["text"]));
        var say = new SayRequest
        {
            Npc = (string)full["npc"], Session = (string)full["session"],
            Character = (MsgMap)full["character"], Utterance = (string)full["utterance"],
            Screenshot = Screenshot.Rgb((byte[])shot["data"], (int)(long)shot["width"], (int)(long)shot["height"]),
            Scene = (MsgMap)full["scene"], History = history,
            Temperature = (double)options["temperature"], TopP = (double)options["top_p"],
            TopK = (int)(long)options["top_k"], RepetitionPenalty = (double)options["repetition_penalty"],
            MaxTokens = (int)(long)options["max_tokens"],
            Seed = (long)full["seed"], DeadlineMs = (int)(long)full["deadline_ms"], Stream = true,
        };
        byte[] built = MsgPack.Encode(NpcBrainClient.BuildSay((string)full["id"], say));
        Check("BuildSay == say_full", built.SequenceEqual(File.ReadAllBytes(Path.Combine(dir, "say_full.msgpack"))), "");
        var signJson = (MsgMap)new Json(File.ReadAllText(Path.Combine(dir, "say_read_text.json"), Encoding.UTF8)).Parse();
        var signShot = Screenshot.Png((byte[])((MsgMap)signJson["screenshot"])["data"]);
        signShot.ReadText = true;
        var sign = new SayRequest { Npc = (string)signJson["npc"], CharacterRef = (string)signJson["character_ref"],
                                    Utterance = (string)signJson["utterance"], Screenshot = signShot };
        Check("BuildSay == say_read_text", MsgPack.Encode(NpcBrainClient.BuildSay((string)signJson["id"], sign))
              .SequenceEqual(File.ReadAllBytes(Path.Combine(dir, "say_read_text.msgpack"))), "");

        // Reply parsing.
        var line = NpcBrainClient.ParseLine((MsgMap)MsgPack.Decode(File.ReadAllBytes(Path.Combine(dir, "line_cached.msgpack"))));
        Check("ParseLine", line.Id == "r-2" && line.Emotion == "neutral" && line.Cached && line.Tokens == 19
              && line.Seed == 9223372036854775807UL, "");
        var error = NpcBrainClient.ParseError((MsgMap)MsgPack.Decode(File.ReadAllBytes(Path.Combine(dir, "error_overloaded.msgpack"))));
        Check("ParseError", error.Code == ErrorCodes.Overloaded && error.RetryAfterMs == 250, "");
        var nullId = NpcBrainClient.ParseError((MsgMap)MsgPack.Decode(File.ReadAllBytes(Path.Combine(dir, "error_null_id.msgpack"))));
        Check("ParseError null id", nullId.Id == null && nullId.Code == ErrorCodes.BadRequest, "");

        // Malformed frames never crash the decoder with anything but MsgPackException.
        foreach (string path in Directory.GetFiles(Path.Combine(dir, "bad"), "*.msgpack"))
        {
            string failure = null;
            try { MsgPack.Decode(File.ReadAllBytes(path)); }
            catch (MsgPackException) { }
            catch (Exception e) { failure = e.GetType().Name + ": " + e.Message; }
            Check("bad/" + Path.GetFileName(path), failure == null, failure);
        }

        Console.WriteLine(_passed + " passed, " + _failed + " failed");
        return _failed == 0 ? 0 : 1;
    }

    private static void Check(string what, bool ok, string detail)
    {
        if (ok) { _passed++; return; }
        _failed++;
        Console.WriteLine("FAIL " + what + (string.IsNullOrEmpty(detail) ? "" : ": " + detail));
    }

    private static string Hex(byte[] b, int max)
    {
        var sb = new StringBuilder();
        for (int i = 0; i < Math.Min(b.Length, max); i++) sb.Append(b[i].ToString("x2"));
        if (b.Length > max) sb.Append("...(" + b.Length + " bytes)");
        return sb.ToString();
    }

    private static bool DeepEqual(object a, object b)
    {
        if (a == null || b == null) return a == null && b == null;
        if (a is MsgMap && b is MsgMap)
        {
            var x = (MsgMap)a; var y = (MsgMap)b;
            if (x.Count != y.Count) return false;
            if (!x.Keys.SequenceEqual(y.Keys)) return false;
            foreach (var kv in x) if (!DeepEqual(kv.Value, y[kv.Key])) return false;
            return true;
        }
        if (a is List<object> && b is List<object>)
        {
            var x = (List<object>)a; var y = (List<object>)b;
            if (x.Count != y.Count) return false;
            for (int i = 0; i < x.Count; i++) if (!DeepEqual(x[i], y[i])) return false;
            return true;
        }
        if (a is byte[] && b is byte[]) return ((byte[])a).SequenceEqual((byte[])b);
        if (a is double && b is double) return BitConverter.DoubleToInt64Bits((double)a) == BitConverter.DoubleToInt64Bits((double)b);
        return a.GetType() == b.GetType() && a.Equals(b);
    }

    /// <summary>Just enough JSON for the vectors: objects keep key order, {"$bin": b64} is byte[],
    /// a number with '.', 'e' or 'E' is a double, other numbers long (ulong if too big).</summary>
    private sealed class Json
    {
        private readonly string _s;
        private int _i;

        public Json(string s) { _s = s; }

        public object Parse()
        {
            object v = Value();
            Ws();
            if (_i != _s.Length) throw new FormatException("trailing JSON");
            return v;
        }

        private void Ws() { while (_i < _s.Length && char.IsWhiteSpace(_s[_i])) _i++; }

        private object Value()
        {
            Ws();
            char c = _s[_i];
            if (c == '{') return Obj();
            if (c == '[') return Arr();
            if (c == '"') return Str();
            if (_s.Substring(_i).StartsWith("true")) { _i += 4; return true; }
            if (_s.Substring(_i).StartsWith("false")) { _i += 5; return false; }
            if (_s.Substring(_i).StartsWith("null")) { _i += 4; return null; }
            return Num();
        }

        private object Obj()
        {
            var m = new MsgMap();
            _i++;
            Ws();
            if (_s[_i] == '}') { _i++; return m; }
            while (true)
            {
                Ws();
                string key = Str();
                Ws(); _i++; // ':'
                m[key] = Value();
                Ws();
                if (_s[_i++] == '}') break;
            }
            if (m.Count == 1 && m.ContainsKey("$bin")) return Convert.FromBase64String((string)m["$bin"]);
            return m;
        }

        private List<object> Arr()
        {
            var list = new List<object>();
            _i++;
            Ws();
            if (_s[_i] == ']') { _i++; return list; }
            while (true)
            {
                list.Add(Value());
                Ws();
                if (_s[_i++] == ']') break;
            }
            return list;
        }

        private string Str()
        {
            var sb = new StringBuilder();
            _i++;
            while (true)
            {
                char c = _s[_i++];
                if (c == '"') break;
                if (c != '\\') { sb.Append(c); continue; }
                char e = _s[_i++];
                switch (e)
                {
                    case 'n': sb.Append('\n'); break;
                    case 't': sb.Append('\t'); break;
                    case 'r': sb.Append('\r'); break;
                    case 'b': sb.Append('\b'); break;
                    case 'f': sb.Append('\f'); break;
                    case 'u': sb.Append((char)Convert.ToInt32(_s.Substring(_i, 4), 16)); _i += 4; break;
                    default: sb.Append(e); break;
                }
            }
            return sb.ToString();
        }

        private object Num()
        {
            int start = _i;
            while (_i < _s.Length && "+-0123456789.eE".IndexOf(_s[_i]) >= 0) _i++;
            string t = _s.Substring(start, _i - start);
            if (t.IndexOfAny(new[] { '.', 'e', 'E' }) >= 0) return double.Parse(t, CultureInfo.InvariantCulture);
            long l;
            if (long.TryParse(t, NumberStyles.Integer, CultureInfo.InvariantCulture, out l)) return l;
            return ulong.Parse(t, CultureInfo.InvariantCulture);
        }
    }
}
