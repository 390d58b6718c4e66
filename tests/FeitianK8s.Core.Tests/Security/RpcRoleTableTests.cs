using FeitianK8s.Core.Security;
using Google.Protobuf.Reflection;
using static FeitianK8s.Core.Security.ComponentRoles;
using Roles = FeitianK8s.Core.Security.ComponentRoles;

namespace FeitianK8s.Core.Tests.Security;

public sealed class RpcRoleTableTests
{
    private static IEnumerable<string> MethodsOf(ServiceDescriptor service) => service.Methods.Select(m => $"/{service.FullName}/{m.Name}");

    private static readonly string[] Served =
    [
        .. MethodsOf(FeitianK8s.Proto.Master.Master.Descriptor),
        .. MethodsOf(FeitianK8s.Proto.ChunkServer.ChunkServer.Descriptor),
    ];

    [Fact]
    public void Every_master_and_chunk_server_method_has_a_rule_and_the_table_names_no_other()
    {
        var table = RpcRoleTable.Default;
        Assert.DoesNotContain(Served, m => table.AllowedRoles(m).Count == 0);
        Assert.Empty(table.Methods.Except(Served));
    }

    [Theory]
    [InlineData("Master/RegisterChunkServer", Roles.ChunkServer)]
    [InlineData("Master/Heartbeat", Roles.ChunkServer)]
    [InlineData("ChunkServer/DeleteChunk", Roles.Master)]
    [InlineData("ChunkServer/CopyChunkFromPeer", Roles.Master)]
    public void Only_one_role_may_call(string method, string only)
    {
        var full = "/feitian.pangu.v1." + method;
        Assert.Equal([only], RpcRoleTable.Default.AllowedRoles(full));
    }

    [Theory]
    [InlineData("Master/CreateVolume")]
    [InlineData("Master/DeleteVolume")]
    [InlineData("Master/ResizeVolume")]
    public void Only_the_CSI_controller_the_operator_and_the_admin_CLI_create_or_delete_volumes(string method)
    {
        Assert.Equal([Admin, CsiController, Operator], RpcRoleTable.Default.AllowedRoles("/feitian.pangu.v1." + method).Order(StringComparer.Ordinal));
    }

    [Theory]
    [InlineData(Roles.Master)]
    [InlineData(Roles.ChunkServer)]
    public void Servers_never_append_create_files_or_take_leases(string role)
    {
        var table = RpcRoleTable.Default;
        foreach (var method in new[] { "ChunkServer/Append", "ChunkServer/CreateChunk", "Master/CreateFile", "Master/DeleteFile", "Master/AcquireVolumeLease", "Master/AllocateChunk" })
        {
            Assert.False(table.IsAllowed("/feitian.pangu.v1." + method, role), $"{role} may call {method}");
        }
    }

    [Fact]
    public void An_unknown_method_or_role_is_refused_and_a_table_with_an_unknown_role_is_rejected()
    {
        Assert.False(RpcRoleTable.Default.IsAllowed("/feitian.pangu.v1.Master/NoSuchCall", Admin));
        Assert.False(RpcRoleTable.Default.IsAllowed("/feitian.pangu.v1.Master/GetClusterStatus", "stranger"));
        Assert.Throws<ArgumentException>(() => new RpcRoleTable(new Dictionary<string, string[]> { ["/x/Y"] = ["root"] }));
    }
}
