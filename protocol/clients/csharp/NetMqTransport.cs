// NetMQ (pure C# ZeroMQ) transport for NpcBrainClient. Needs the NetMQ package (4.x) in the
// Unity project, e.g. its DLLs and AsyncIO's under Assets/Plugins. Not needed to build the codec.

using System;
using System.Text;
using NetMQ;
using NetMQ.Sockets;

namespace NpcBrain
{
    public sealed class NetMqTransport : INpcBrainTransport
    {
        private readonly DealerSocket _socket;

        /// <param name="address">e.g. "tcp://127.0.0.1:5555"</param>
        /// <param name="routingId">stable id so retries after a reconnect are deduplicated (SPEC 6); null = random</param>
        /// <param name="serverPublicKeyZ85">the daemon's CURVE public key; required off loopback (SPEC 1)</param>
        public NetMqTransport(string address, string routingId = null, string serverPublicKeyZ85 = null)
        {
            // In Unity call AsyncIO.ForceDotNet.Force() once before the first socket, and
            // NetMQConfig.Cleanup(false) in OnApplicationQuit.
            _socket = new DealerSocket();
            _socket.Options.Identity = Encoding.ASCII.GetBytes(routingId ?? Guid.NewGuid().ToString("N"));
            _socket.Options.Linger = TimeSpan.Zero;
            _socket.Options.HeartbeatInterval = TimeSpan.FromSeconds(5);
            _socket.Options.HeartbeatTimeout = TimeSpan.FromSeconds(15);
            _socket.Options.HeartbeatTtl = TimeSpan.FromSeconds(15);
            if (serverPublicKeyZ85 != null)
            {
                _socket.Options.CurveServerKey = NetMQCertificate.FromPublicKey(serverPublicKeyZ85).PublicKey;
                _socket.Options.CurveCertificate = new NetMQCertificate(); // fresh client key pair
            }
            _socket.Connect(address);
        }

        public void Send(byte[] frame)
        {
            if (!_socket.TrySendFrame(TimeSpan.Zero, frame))
                throw new InvalidOperationException("npc-brain: send queue full (daemon unreachable?)");
        }

        public bool TryReceive(out byte[] frame)
        {
            return _socket.TryReceiveFrameBytes(TimeSpan.Zero, out frame);
        }

        public void Dispose() { _socket.Dispose(); }
    }
}
