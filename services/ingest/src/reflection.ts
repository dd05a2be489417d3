import { create, toBinary, type DescFile } from '@bufbuild/protobuf';
import { FileDescriptorProtoSchema, FileDescriptorSetSchema } from '@bufbuild/protobuf/wkt';
import type { Server } from '@grpc/grpc-js';
import { loadFileDescriptorSetFromBuffer } from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';
import { AdminService, file_relay_v1_mail, MailService } from '@relay/proto';

/** The services reflection describes: the public API, not the health or reflection services. */
export const REFLECTED_SERVICES = [MailService.typeName, AdminService.typeName];

/** A file and what it imports, imports first (the order a FileDescriptorSet wants). */
function withImports(file: DescFile, out: DescFile[] = []): DescFile[] {
  for (const dep of file.dependencies) withImports(dep, out);
  if (!out.includes(file)) out.push(file);
  return out;
}

/**
 * Serves gRPC server reflection (grpc.reflection.v1 and v1alpha), so grpcurl and similar tools can
 * list and describe the relay's services without its .proto files. The descriptors are the ones
 * compiled into @relay/proto's generated code, so nothing has to ship beside the built service.
 */
export function addReflection(server: Pick<Server, 'addService'>): void {
  const files = withImports(file_relay_v1_mail).map((f) => f.proto);
  const pkg = loadFileDescriptorSetFromBuffer(Buffer.from(toBinary(FileDescriptorSetSchema, create(FileDescriptorSetSchema, { file: files }))));
  // proto-loader hands on files it rebuilt per package, without their imports, and tools that
  // link what they get (grpcurl) then miss google.protobuf.Timestamp: reflection gets the files
  // as compiled instead, with their names and imports.
  const compiled = files.map((f) => Buffer.from(toBinary(FileDescriptorProtoSchema, f)));
  for (const def of Object.values(pkg)) if ('fileDescriptorProtos' in def) def.fileDescriptorProtos = compiled;
  new ReflectionService(pkg, { services: REFLECTED_SERVICES }).addToServer(server);
}
